#!/usr/bin/env python3
"""libcommon/tboard and libcommon/plot against the tensorboard package
(2.19.0) and plain zlib + struct, through tests/helpers/tboard-write.
TAP-style output.

1. Event files lf writes (a training run's worth of Trainer logs: loss,
   grad_norm, learning_rate, epoch every few steps, evaluations, the final
   summary, the "args" text summary) read back by tensorboard's own
   EventAccumulator: the same tags, steps, float32 values and wall times,
   the text plugin's tensor.  Every record byte for byte what tensorboard's
   protobuf classes serialize and its RecordWriter frames.
2. A writer killed without closing, and a file cut in the middle of a
   record (a run killed mid-write): EventAccumulator reads every whole
   record.
3. The loss plot: decoded here with zlib and struct only (no Pillow, no
   png module): PNG signature, chunk CRCs, a 640x480 8-bit RGB image at
   100 dpi, the smoothed curve's colour at every data point, white where
   no data are.  LLaMA-Factory's smooth() (written out below from
   extras/ploting.py) equals lf's to the bit; training_<key>.png names.
"""
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.plugins.text import plugin_data_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNITS = os.environ.get("LF_UNITS", os.path.join(ROOT, "build", "dyn", "tests"))
HELPER = os.path.join(UNITS, "helpers", "tboard-write")

failures = 0


def report(good, name, detail=()):
    global failures
    print(("ok - " if good else "not ok - ") + name)
    if not good:
        failures += 1
        for d in detail:
            print("#   " + str(d)[:400])


def run(args, stdin=""):
    out = subprocess.run([HELPER] + args, input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("tboard-write %s: %s" % (" ".join(args), out.stderr.strip()))
    return out.stdout


def rewrite_logs(d):
    """transformers' integration_utils.rewrite_logs (5.5.4)."""
    new_d = {}
    for k, v in d.items():
        if k.startswith("eval_"):
            new_d["eval/" + k[5:]] = v
        elif k.startswith("test_"):
            new_d["test/" + k[5:]] = v
        else:
            new_d["train/" + k] = v
    return new_d


def accumulate(logdir):
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


# ---- a training run's logs ----

def training_logs():
    """(step, wall_time, {key: value}) as Trainer.log passes them."""
    rng = random.Random(7)
    logs = []
    wall = 1750000000.25
    for step in range(5, 101, 5):
        wall += 3.5
        d = {"loss": 2.5 * math.exp(-step / 40) + rng.uniform(-0.1, 0.1),
             "grad_norm": rng.uniform(0.5, 3.0),
             "learning_rate": 5e-5 * (1 - step / 100),
             "epoch": step / 50}
        logs.append((step, wall, d))
        if step % 50 == 0:
            wall += 1.0
            logs.append((step, wall, {"eval_loss": 1.1 + rng.uniform(0, 0.1), "eval_runtime": 4.2731,
                                      "eval_samples_per_second": 23.402, "eval_steps_per_second": 2.925,
                                      "epoch": step / 50}))
    wall += 0.5
    logs.append((100, wall, {"train_runtime": 361.0312, "train_samples_per_second": 4.432,
                             "train_steps_per_second": 0.277, "total_flos": 1.2345678e15,
                             "train_loss": 1.0123456789, "epoch": 2.0}))
    return logs


def test_events(tmp):
    logdir = os.path.join(tmp, "runs", "Jun15_10-00-00_host")
    text = '{\n  "output_dir": "saves/llama3-8b/lora/sft",\n  "learning_rate": 5e-05,\n  "note": "été ✓"\n}'
    cmds = ["text args 0 1750000000.0 " + text.replace("\\", "\\\\").replace("\n", "\\n")]
    expected = {}  # tag -> [(step, wall, float32 value)]
    for step, wall, d in training_logs():
        for k, v in d.items():
            cmds.append("hf %s %d %.17g %.17g" % (k, step, v, wall))
        for tag, v in rewrite_logs(d).items():
            expected.setdefault(tag, []).append((step, wall, np.float32(v)))
    # values a float32 holds oddly, a step past 32 bits
    odd = [("lf/neg", 200, -3.25), ("lf/tiny", 201, 1e-40), ("lf/huge", 202, 3e38), ("lf/zero", 1 << 40, 0.0)]
    for tag, step, v in odd:
        cmds.append("scalar %s %d %.17g 1760000000.5" % (tag, step, v))
        expected.setdefault(tag, []).append((step, 1760000000.5, np.float32(v)))
    path = run(["events", logdir], "\n".join(cmds) + "\n").strip()
    name = os.path.basename(path)
    parts = name.split(".")
    report(os.path.dirname(path) == logdir and name.startswith("events.out.tfevents.") and len(parts[3]) == 10
           and parts[3].isdigit() and parts[-2] != "" and parts[-1] == "0",
           "event file name events.out.tfevents.<10 digits>.<host>.<pid>.0: " + name)

    acc = accumulate(logdir)
    tags = acc.Tags()
    report(sorted(tags["scalars"]) == sorted(expected),
           "EventAccumulator finds every scalar tag (%d)" % len(expected),
           [sorted(tags["scalars"]), sorted(expected)])
    bad = []
    for tag, want in expected.items():
        got = [(e.step, e.wall_time, np.float32(e.value)) for e in acc.Scalars(tag)] \
            if tag in tags["scalars"] else []
        if got != want:
            bad.append((tag, got[:3], want[:3]))
    report(not bad, "steps, wall times and float32 values of every scalar as written", bad)
    report([e.step for e in acc.Scalars("train/loss")] == list(range(5, 101, 5))
           and [e.step for e in acc.Scalars("eval/loss")] == [50, 100],
           "train/loss every 5 steps, eval/loss at 50 and 100")
    for want_tag in ("train/loss", "train/grad_norm", "train/learning_rate", "train/epoch", "eval/loss",
                     "eval/runtime", "eval/samples_per_second", "eval/steps_per_second", "train/train_runtime",
                     "train/train_loss", "train/total_flos"):
        if want_tag not in tags["scalars"]:
            report(False, "tag %s present" % want_tag)
            break
    else:
        report(True, "the Trainer's tags: train/loss, train/grad_norm, train/learning_rate, train/epoch, "
                     "eval/loss, eval/runtime, ..., train/train_loss")

    report("args/text_summary" in tags["tensors"], "the args text summary is a tensor", [tags["tensors"]])
    if "args/text_summary" in tags["tensors"]:
        t = acc.Tensors("args/text_summary")
        meta = acc.SummaryMetadata("args/text_summary")
        report(len(t) == 1 and t[0].step == 0 and t[0].tensor_proto.string_val[0].decode("utf-8") == text
               and meta.plugin_data.plugin_name == "text" and list(t[0].tensor_proto.tensor_shape.dim)[0].size == 1,
               "text summary: the text (newlines, UTF-8) at step 0, plugin text, shape [1]")

    # byte for byte: what tensorboard's protobuf classes and RecordWriter make
    import io
    want = io.BytesIO()
    rw = RecordWriter(want)
    raw = open(path, "rb").read()
    first_len = struct.unpack("<Q", raw[:8])[0]
    first = event_pb2.Event.FromString(raw[12:12 + first_len])
    report(first.file_version == "brain.Event:2" and first.wall_time > 1.6e9 and first.step == 0
           and first.source_metadata.writer == "lf" and acc.GetSourceWriter() == "lf",
           "first record: the version event brain.Event:2, source writer lf")
    rw.write(first.SerializeToString())
    smd = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="text", content=plugin_data_pb2.TextPluginData(version=0).SerializeToString()))
    tensor = tensor_pb2.TensorProto(dtype="DT_STRING", string_val=[text.encode("utf-8")],
                                    tensor_shape=tensor_shape_pb2.TensorShapeProto(
                                        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)]))
    rw.write(event_pb2.Event(wall_time=1750000000.0, step=0, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="args/text_summary", metadata=smd, tensor=tensor)])).SerializeToString())
    for step, wall, d in training_logs():
        for tag, v in rewrite_logs(d).items():
            rw.write(event_pb2.Event(wall_time=wall, step=step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])).SerializeToString())
    for tag, step, v in odd:
        rw.write(event_pb2.Event(wall_time=1760000000.5, step=step, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])).SerializeToString())
    want = want.getvalue()
    diff = next((i for i in range(min(len(raw), len(want))) if raw[i] != want[i]), None)
    report(raw == want, "the whole file byte for byte as tensorboard's protobuf + RecordWriter (%d bytes)" % len(raw),
           ["lengths %d %d, first difference at %s" % (len(raw), len(want), diff)])


def test_killed(tmp):
    logdir = os.path.join(tmp, "killed")
    cmds = ["scalar train/loss %d %g 1750000000" % (s, 3.0 / s) for s in range(1, 11)] + ["crash"]
    path = run(["events", logdir], "\n".join(cmds) + "\n").strip()
    acc = accumulate(logdir)
    got = [(e.step, round(e.value, 6)) for e in acc.Scalars("train/loss")]
    report(got == [(s, round(float(np.float32(3.0 / s)), 6)) for s in range(1, 11)],
           "a writer killed without closing leaves every record readable", [got])
    # cut the file in the middle of its last record
    raw = open(path, "rb").read()
    open(path, "wb").write(raw[:-7])
    acc = accumulate(logdir)
    got = [e.step for e in acc.Scalars("train/loss")]
    report(got == list(range(1, 10)), "a record cut short: the whole ones before it still read", [got])


# ---- PNG ----

def read_png(path):
    """(width, height, rows of RGB bytes, chunks) with zlib and struct."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, idat, chunks, ihdr = 8, b"", [], None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]
        if crc != zlib.crc32(typ + body) & 0xFFFFFFFF:
            raise ValueError("bad CRC in chunk %r" % typ)
        chunks.append((typ, body))
        pos += 12 + n
        if typ == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat += body
        elif typ == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or ctype != 2 or interlace != 0:
        raise ValueError("not 8-bit RGB: %r" % (ihdr,))
    raw = zlib.decompress(idat)
    stride, bpp = w * 3, 3
    rows, prev, p = [], bytearray(stride), 0
    for _ in range(h):
        f = raw[p]
        line = bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
            elif f != 0:
                raise ValueError("bad filter %d" % f)
        rows.append(line)
        prev = line
    return w, h, rows, chunks


def smooth(scalars):
    """LLaMA-Factory 0.9.5 extras/ploting.py smooth()."""
    if len(scalars) == 0:
        return []
    last = scalars[0]
    smoothed = []
    weight = 1.8 * (1 / (1 + math.exp(-0.05 * len(scalars))) - 0.5)
    for next_val in scalars:
        smoothed_val = last * weight + (1 - weight) * next_val
        smoothed.append(smoothed_val)
        last = smoothed_val
    return smoothed


def test_smooth():
    rng = random.Random(11)
    bad = []
    for n in (1, 2, 3, 10, 57, 100, 1000):
        vals = [rng.uniform(0.01, 5.0) for _ in range(n)]
        got = [float(x) for x in run(["smooth"], "".join("%.17g\n" % v for v in vals)).split()]
        if got != smooth(vals):
            bad.append((n, got[:3], smooth(vals)[:3]))
    report(not bad, "lf's smoothing equals LLaMA-Factory's smooth() bit for bit (n = 1 .. 1000)", bad)


def test_png(tmp):
    rng = random.Random(3)
    steps = list(range(10, 1010, 10))
    loss = [2.8 * math.exp(-s / 250) + 0.4 + rng.uniform(-0.08, 0.08) for s in steps]
    png = os.path.join(tmp, "training_loss.png")
    frame = json.loads(run(["plot", png, "training loss of saves/tiny", "loss"],
                           "".join("%d %.17g\n" % (s, v) for s, v in zip(steps, loss))))
    try:
        w, h, rows, chunks = read_png(png)
    except ValueError as e:
        report(False, "the PNG decodes with zlib and struct", [e])
        return
    report((w, h) == (640, 480) and frame["width"] == 640, "a 640x480 8-bit RGB PNG, every chunk's CRC good")
    phys = [b for t, b in chunks if t == b"pHYs"]
    report(phys and struct.unpack(">IIB", phys[0]) == (3937, 3937, 1), "pHYs: 100 dpi, like savefig(dpi=100)")

    def px(x, y):
        return tuple(rows[int(y)][int(x) * 3:int(x) * 3 + 3])

    def to_px(x, y):
        f = frame
        return (f["left"] + (x - f["xmin"]) / (f["xmax"] - f["xmin"]) * (f["right"] - f["left"]),
                f["bottom"] - (y - f["ymin"]) / (f["ymax"] - f["ymin"]) * (f["bottom"] - f["top"]))

    sm = smooth(loss)
    on = sum(1 for s, v in zip(steps, sm) if (lambda c: c[2] > c[0] + 60)(px(*to_px(s, v))))
    report(on == len(steps), "the smoothed curve (#1f77b4) at every data point (%d of %d)" % (on, len(steps)))
    raw_on = sum(1 for s, v in zip(steps, loss) if px(*to_px(s, v)) != (255, 255, 255))
    report(raw_on == len(steps), "the raw curve drawn at every data point (%d of %d)" % (raw_on, len(steps)))
    blank = all(px(x, y) == (255, 255, 255) for x in range(int(frame["left"]) + 3, int(frame["left"]) + 50)
                for y in range(int(frame["bottom"]) - 50, int(frame["bottom"]) - 3))
    report(blank, "white where there are no data (lower left of the axes)")
    colours = {px(x, y) for y in range(h) for x in range(w)}
    report((0x1f, 0x77, 0xb4) in colours and (0, 0, 0) in colours and (255, 255, 255) in colours,
           "matplotlib's colours: white ground, black axes, #1f77b4 curve")
    report(frame["xmin"] < steps[0] < steps[-1] < frame["xmax"] and frame["ymin"] < min(loss) < max(loss) < frame["ymax"],
           "the data inside the axes, with margins")

    out = os.path.join(tmp, "saves")
    os.mkdir(out)
    run(["key", out, "loss"], "1 2.0\n2 1.5\n3 1.25\n")
    run(["key", out, "eval_loss"], "2 1.7\n")
    skipped = run(["key", out, "eval_accuracy"], "").strip()
    report(sorted(os.listdir(out)) == ["training_eval_loss.png", "training_loss.png"] and skipped == "skipped",
           "training_loss.png, training_eval_loss.png; a key without points skipped", [os.listdir(out)])
    report("PIL" not in sys.modules and "png" not in sys.modules, "no Pillow and no png module used")


def main():
    with tempfile.TemporaryDirectory(prefix="lf-tboard-oracle-") as tmp:
        test_events(tmp)
        test_killed(tmp)
        test_smooth()
        test_png(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
