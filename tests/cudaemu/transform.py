#!/usr/bin/env python3
"""cudaemu: CUDA source -> host C++ for the CPU emulator.

    transform.py SRC DST [--shrink]

- kernel launches  k<<<grid, block[, shmem[, stream]]>>>(args);  (template
  kernels k<T, 64>, qualified names, launches over several lines) become
      emu_launch(__FILE__, __LINE__, "k", (const void *)k, [&] { k(args); }, grid, block[, shmem[, stream]]);
  the lambda runs once per emulated thread (so the arguments are evaluated
  per thread, as copies of the kernel's parameters are on a GPU);
- __shared__ declarations inside functions become statics that are filled
  with 0xff when a block first reaches them (emu_shared_poison);
- extern __shared__ T name[]; becomes T *name = (T *)emu_dyn_smem; (the
  launch's dynamic shared memory, 0xff at each block's start);
- with --shrink (EMU_SHRINK, on by default in build.sh): the timing loops
  of the tests run once (WARMUP/BIG_WARMUP/warmup = 0, ITERS/BIG_ITERS/iters = 1)
  and the attention test's timed shape shrinks (BIG_T 256, BIG_HEADS 8,
  BIG_KV 2); EMU_SUBST='regex=>replacement;;regex=>replacement' adds rules.
Line numbers are kept (a #line directive names the original file).
"""
import os
import re
import sys


def mask(s):
    """s with comments, string and char literals replaced by spaces (newlines kept)"""
    out = list(s)
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if s.startswith('//', i):
            j = s.find('\n', i)
            j = n if j < 0 else j
            for k in range(i, j):
                out[k] = ' '
            i = j
        elif s.startswith('/*', i):
            j = s.find('*/', i + 2)
            j = n if j < 0 else j + 2
            for k in range(i, j):
                if out[k] != '\n':
                    out[k] = ' '
            i = j
        elif c in '"\'':
            # raw strings R"( ... )" are rare in CUDA sources: not handled
            j = i + 1
            while j < n and s[j] != c:
                if s[j] == '\\':
                    j += 1
                elif s[j] == '\n':
                    break
                j += 1
            for k in range(i + 1, min(j, n)):
                if out[k] != '\n':
                    out[k] = ' '
            i = j + 1
        else:
            i += 1
    return ''.join(out)


def match_close(m, i, open_c, close_c):
    """index of the bracket closing the one at m[i]"""
    depth = 0
    for j in range(i, len(m)):
        if m[j] == open_c:
            depth += 1
        elif m[j] == close_c:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError('unbalanced %s at offset %d' % (open_c, i))


def split_top(text, mtext):
    """split text at the commas at bracket depth 0 (per the masked twin)"""
    parts, depth, last = [], 0, 0
    for i, c in enumerate(mtext):
        if c in '([{':
            depth += 1
        elif c in ')]}':
            depth -= 1
        elif c == ',' and depth == 0:
            parts.append(text[last:i])
            last = i + 1
    parts.append(text[last:])
    return parts


def template_kernels(m):
    """names of the file's template __global__ functions"""
    names = set()
    for t in re.finditer(r'\btemplate\s*<', m):
        try:
            close = match_close(m.replace('<', '\x01').replace('>', '\x02'), t.end() - 1, '\x01', '\x02')
        except ValueError:
            continue
        head = m[close + 1:close + 600]
        paren = head.find('(')
        sig = head[:paren] if paren >= 0 else ''
        # __launch_bounds__(...) comes before the name: skip over it
        lb = re.search(r'__launch_bounds__\s*\(', head)
        if lb and lb.start() < paren:
            j = match_close(head, lb.end() - 1, '(', ')')
            rest = head[j + 1:]
            sig = head[:lb.start()] + rest[:rest.find('(')]
        if '__global__' in sig:
            mm = re.search(r'(\w+)\s*$', sig)
            if mm:
                names.add(mm.group(1))
    return names


def rewrite_launches(s):
    m = mask(s)
    tkernels = template_kernels(m)
    out, pos, count = [], 0, 0
    while True:
        i = m.find('<<<', pos)
        if i < 0:
            break
        # the kernel expression before <<<
        j = i
        while j > 0 and m[j - 1] in ' \t\n':
            j -= 1
        name_end = j
        if j > 0 and m[j - 1] == '>':
            depth = 0
            k = j - 1
            while k >= 0:
                if m[k] == '>':
                    depth += 1
                elif m[k] == '<':
                    depth -= 1
                    if depth == 0:
                        break
                k -= 1
            j = k
            while j > 0 and m[j - 1] in ' \t\n':
                j -= 1
        while j > 0 and (m[j - 1].isalnum() or m[j - 1] in '_:'):
            j -= 1
        name_start = j
        name = s[name_start:name_end]
        if not re.match(r'[A-Za-z_:]', name):
            raise SystemExit('transform: cannot find the kernel name before <<< at line %d' % (s.count('\n', 0, i) + 1))
        # the configuration, to the >>> at depth 0
        depth, k = 0, i + 3
        while k < len(m):
            if m[k] in '([{':
                depth += 1
            elif m[k] in ')]}':
                depth -= 1
            elif depth == 0 and m.startswith('>>>', k):
                break
            k += 1
        cfg_text, cfg_mask = s[i + 3:k], m[i + 3:k]
        a = k + 3
        while m[a] in ' \t\n':
            a += 1
        if m[a] != '(':
            raise SystemExit('transform: no argument list after >>> at line %d' % (s.count('\n', 0, a) + 1))
        b = match_close(m, a, '(', ')')
        e = b + 1
        while m[e] in ' \t\n':
            e += 1
        if m[e] != ';':
            raise SystemExit('transform: a launch not followed by ; at line %d' % (s.count('\n', 0, e) + 1))
        args = s[a + 1:b]
        cfg = split_top(cfg_text, cfg_mask)
        if not 2 <= len(cfg) <= 4:
            raise SystemExit('transform: launch configuration with %d parts at line %d' % (len(cfg), s.count('\n', 0, i) + 1))
        base = re.sub(r'\s+', '', name)
        has_targs = '<' in m[name_start:name_end]
        plain = re.sub(r'<.*', '', base, flags=re.S).split('::')[-1]
        key = 'nullptr' if (plain in tkernels and not has_targs) else '(const void *)%s' % name
        label = re.sub(r'\s+', ' ', name).replace('"', '\\"')
        # newlines outside args and cfg, kept so that line numbers stay
        extra_nl = s[name_start:i].count('\n') + s[k:a].count('\n') + s[b:e].count('\n')
        rep = 'emu_launch(__FILE__, __LINE__, "%s", %s, [&]() { %s(%s); }, %s);%s' % (
            label, key, name, args, ','.join(cfg), '\n' * extra_nl)
        out.append(s[pos:name_start])
        out.append(rep)
        pos = e + 1
        m = m  # positions below refer to the original text
        count += 1
    out.append(s[pos:])
    return ''.join(out), count


def brace_depths(m):
    d, depths = 0, []
    for c in m:
        if c == '{':
            d += 1
        elif c == '}':
            d -= 1
        depths.append(d)
    return depths


SHARED_RE = re.compile(
    r'(?P<static>\bstatic\s+)?\b__shared__\s+(?P<type>(?:__align__\s*\(\s*\d+\s*\)\s*)?(?:const\s+|volatile\s+)*'
    r'[A-Za-z_][\w:]*(?:\s*<[^;{}()]*?>)?(?:\s*\*)*)\s*(?P<align2>__align__\s*\(\s*\d+\s*\)\s*)?'
    r'(?P<name>[A-Za-z_]\w*)\s*(?P<dims>(?:\[[^\];]*\]\s*)*);')
EXTERN_RE = re.compile(
    r'\bextern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?(?P<type>(?:const\s+|volatile\s+)*'
    r'[A-Za-z_][\w:]*(?:\s*<[^;{}()]*?>)?)\s*(?:__align__\s*\(\s*\d+\s*\)\s*)?(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;')


def rewrite_shared(s):
    m = mask(s)
    depths = brace_depths(m)
    out, pos, ns, ne = [], 0, 0, 0
    # extern __shared__ first (it also matches SHARED_RE's shape)
    spans = []
    for x in EXTERN_RE.finditer(m):
        t = s[x.start('type'):x.end('type')].strip()
        nm = x.group('name')
        if depths[x.start()] > 0:
            rep = '%s *%s = (%s *)emu_dyn_smem;' % (t, nm, t)
        else:
            rep = '#define %s ((%s *)emu_dyn_smem)' % (nm, t)
        spans.append((x.start(), x.end(), rep))
        ne += 1
    taken = [(a, b) for a, b, _ in spans]
    for x in SHARED_RE.finditer(m):
        if any(a <= x.start() < b for a, b in taken):
            continue
        if re.search(r'\bextern\s*$', m[max(0, x.start() - 20):x.start()]):
            continue
        if depths[x.start()] <= 0:
            continue  # file scope: left to the header's #define __shared__ static
        t = s[x.start('type'):x.end('type')]
        al = x.group('align2') or ''
        nm = x.group('name')
        dims = s[x.start('dims'):x.end('dims')]
        rep = 'static %s %s%s%s; emu_shared_poison((void *)&%s, sizeof(%s));' % (t, al, nm, dims, nm, nm)
        spans.append((x.start(), x.end(), rep))
        ns += 1
    spans.sort()
    for a, b, rep in spans:
        out.append(s[pos:a])
        out.append(rep + '\n' * s[a:b].count('\n'))
        pos = b
    out.append(s[pos:])
    return ''.join(out), ns, ne


SHRINK = [
    (r'\b(WARMUP|BIG_WARMUP)(\s*=\s*)\d+', r'\g<1>\g<2>0'),
    (r'\b(ITERS|BIG_ITERS)(\s*=\s*)\d+', r'\g<1>\g<2>1'),
    (r'\b(const\s+int\s+warmup\s*=\s*)\d+(\s*,\s*iters\s*=\s*)\d+', r'\g<1>0\g<2>1'),
    (r'enum\s*\{\s*BIG_T\s*=\s*\d+\s*,\s*BIG_HEADS\s*=\s*\d+\s*,\s*BIG_KV\s*=\s*\d+\s*,\s*BIG_D\s*=\s*(\d+)\s*\}',
     r'enum { BIG_T = 256, BIG_HEADS = 8, BIG_KV = 2, BIG_D = \g<1> }'),
]


def transform(src, dst, shrink):
    s = open(src).read()
    s, nl = rewrite_launches(s)
    s, ns, ne = rewrite_shared(s)
    applied = []
    if shrink:
        rules = list(SHRINK)
        extra = os.environ.get('EMU_SUBST', '')
        for r in extra.split(';;'):
            if '=>' in r:
                a, b = r.split('=>', 1)
                rules.append((a, b))
        for a, b in rules:
            s, k = re.subn(a, b, s)
            if k:
                applied.append('%s (%d)' % (a, k))
    hdr = '#line 1 "%s"\n' % os.path.abspath(src)
    text = hdr + s
    old = open(dst).read() if os.path.exists(dst) else None
    if old != text:  # unchanged output keeps its mtime: no rebuild
        open(dst, 'w').write(text)
    return nl, ns, ne, applied


if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if not a.startswith('--')]
    shrink = '--shrink' in sys.argv
    verbose = '--verbose' in sys.argv
    nl, ns, ne, applied = transform(args[0], args[1], shrink)
    if verbose:
        print('cudaemu transform %s: %d launches, %d __shared__, %d extern __shared__%s' % (
            args[0], nl, ns, ne, '; shrink: ' + ', '.join(applied) if applied else ''), file=sys.stderr)
