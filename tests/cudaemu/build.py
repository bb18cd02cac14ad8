#!/usr/bin/env python3
"""cudaemu build driver (build.sh runs it).  See tests/cudaemu/README."""
import glob
import os
import shlex
import subprocess
import sys

EMU = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get('EMU_ROOT', os.path.dirname(os.path.dirname(EMU)))  # the repository
sys.path.insert(0, EMU)
import transform  # noqa: E402


def usage():
    sys.exit('usage: build.sh OUTBIN FILE.cu|.cpp|.c|.o|.a [FILE ...] [-- extra link args]')


def run(cmd, quiet=False):
    if os.environ.get('EMU_VERBOSE_BUILD') or not quiet:
        print('  ' + ' '.join(shlex.quote(c) for c in cmd), file=sys.stderr)
    r = subprocess.call(cmd)
    if r:
        sys.exit('cudaemu build: command failed (%d)' % r)


def pkg(args):
    try:
        return subprocess.check_output(['pkg-config'] + args + ['msgpack', 'libarchive', 'yaml-0.1', 'jansson',
                                                                 'libutf8proc', 'libpcre2-8', 'libxxhash',
                                                                 'libpng']).decode().split()
    except Exception:
        return []


def deps_newer(obj, dep, extra):
    """True when obj is missing or older than a file it depends on"""
    if not os.path.exists(obj):
        return True
    t = os.path.getmtime(obj)
    files = list(extra)
    if os.path.exists(dep):
        text = open(dep).read().replace('\\\n', ' ')
        for line in text.splitlines():
            if ':' in line:
                files += line.split(':', 1)[1].split()
    else:
        return True
    for f in files:
        if not os.path.exists(f) or os.path.getmtime(f) > t:
            return True
    return False


def main():
    argv = sys.argv[1:]
    if len(argv) < 2:
        usage()
    link_extra = []
    if '--' in argv:
        i = argv.index('--')
        argv, link_extra = argv[:i], argv[i + 1:]
    out, files = argv[0], argv[1:]
    if not files:
        usage()
    asan = os.environ.get('EMU_ASAN') == '1'
    shrink = os.environ.get('EMU_SHRINK', '1') != '0'
    variant = 'asan' if asan else 'plain'
    outname = os.path.basename(out)
    bdir = os.environ.get('EMU_BUILD_DIR') or os.path.join(ROOT, 'build', 'cudaemu', variant, 'objs')
    os.makedirs(bdir, exist_ok=True)
    nice = ['nice', '-n', os.environ.get('EMU_NICE', '10')]
    cxx = os.environ.get('CXX', 'g++')
    cc = os.environ.get('CC', 'gcc')
    common = ['-O1', '-g', '-ffp-contract=off', '-fno-omit-frame-pointer', '-pthread', '-Wall',
              '-Wno-unknown-pragmas', '-Wno-unused-function', '-Wno-unused-variable',
              '-Wno-missing-field-initializers', '-Wno-format-truncation']
    san = ['-fsanitize=address,undefined', '-fno-sanitize-recover=undefined'] if asan else []
    incs = ['-I' + os.path.join(EMU, 'include'), '-I' + os.path.join(ROOT, 'kernels'),
            '-I' + os.path.join(ROOT, 'libcommon'), '-I' + os.path.join(ROOT, 'tests', 'cuda')] + pkg(['--cflags'])
    user = shlex.split(os.environ.get('EMU_CXXFLAGS', ''))
    cxxflags = ['-std=c++17'] + common + san + user
    cflags = ['-std=gnu11'] + common + san + shlex.split(os.environ.get('EMU_CFLAGS', ''))
    cu_defs = ['-D__CUDACC__', '-D__NVCC__', '-D__CUDACC_VER_MAJOR__=13', '-D__CUDACC_VER_MINOR__=0']
    flags_tag = ' '.join(cxxflags + cflags + incs + cu_defs + [str(shrink), os.environ.get('EMU_SUBST', '')])

    # the emulator's own objects, once per variant
    rtdir = os.path.join(ROOT, 'build', 'cudaemu', variant, '_runtime')
    os.makedirs(rtdir, exist_ok=True)
    objs = []
    for src in ('emu.cpp', 'cublaslt.cpp'):
        s = os.path.join(EMU, 'src', src)
        o = os.path.join(rtdir, src.replace('.cpp', '.o'))
        d = o[:-2] + '.d'
        if deps_newer(o, d, [s, __file__]):
            run(nice + [cxx] + cxxflags + incs + ['-MMD', '-c', s, '-o', o])
        objs.append(o)

    # sources: each .cu through the transform, into a directory per source
    # directory (its headers transformed alongside, so "x.h" finds them)
    srcdirs = {}
    archives = []
    for f in files:
        fa = os.path.abspath(f)
        ext = os.path.splitext(f)[1]
        if ext in ('.o', '.a', '.so'):
            archives.append(fa)
            continue
        if not os.path.exists(fa):
            sys.exit('cudaemu build: %s: no such file' % f)
        sd = os.path.dirname(fa)
        if sd not in srcdirs:
            srcdirs[sd] = os.path.join(bdir, sd.strip('/').replace('/', '_'))
            os.makedirs(srcdirs[sd], exist_ok=True)
            for h in glob.glob(os.path.join(sd, '*.h')) + glob.glob(os.path.join(sd, '*.cuh')) + \
                    glob.glob(os.path.join(sd, '*.hpp')):
                transform.transform(h, os.path.join(srcdirs[sd], os.path.basename(h)), shrink)
        shadow = srcdirs[sd]
        base = os.path.basename(fa)
        o = os.path.join(shadow, base + '.o')
        d = os.path.join(shadow, base + '.d')
        tagf = os.path.join(shadow, base + '.flags')
        stale_flags = not os.path.exists(tagf) or open(tagf).read() != flags_tag
        if ext == '.cu':
            cpp = os.path.join(shadow, base + '.cpp')
            nl, ns, ne, applied = transform.transform(fa, cpp, shrink)
            print('cudaemu: %s: %d launches, %d __shared__, %d extern __shared__%s' % (
                f, nl, ns, ne, '; shrunk: ' + ', '.join(applied) if applied else ''), file=sys.stderr)
            cmd = [cxx] + cxxflags + cu_defs + ['-iquote', sd] + incs + ['-MMD', '-x', 'c++', '-c', cpp, '-o', o]
            src_for_deps = cpp
        elif ext in ('.cpp', '.cc', '.cxx'):
            cmd = [cxx] + cxxflags + ['-iquote', sd] + incs + ['-MMD', '-MF', d, '-c', fa, '-o', o]
            src_for_deps = fa
        elif ext == '.c':
            cmd = [cc] + cflags + ['-iquote', sd] + incs + ['-MMD', '-MF', d, '-c', fa, '-o', o]
            src_for_deps = fa
        else:
            sys.exit('cudaemu build: %s: unknown file type' % f)
        if ext == '.cu':
            cmd[-4:-4] = ['-MF', d]
        if stale_flags or deps_newer(o, d, [src_for_deps, fa]):
            run(nice + cmd, quiet=True)
            print('cudaemu: compiled %s' % f, file=sys.stderr)
            open(tagf, 'w').write(flags_tag)
        objs.append(o)

    libs = []
    for lib in ('libcommon.a', 'libkernels_cpu.a'):
        p = os.path.join(ROOT, 'build', 'dyn', lib)
        if os.path.exists(p):
            libs.append(p)
    if os.path.dirname(os.path.abspath(out)):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    link = ([cxx] + san + ['-pthread', '-g', '-o', out] + objs + archives + libs +
            ['-L/usr/lib/x86_64-linux-gnu/openblas-openmp', '-lopenblas', '-lgomp', '-lm'] + pkg(['--libs']) +
            link_extra)
    run(nice + link, quiet=True)
    print('cudaemu: linked %s%s' % (out, ' (ASan+UBSan)' if asan else ''), file=sys.stderr)


if __name__ == '__main__':
    main()
