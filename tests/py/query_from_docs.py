"""Runs the Python client of docs/query.md, as printed there, against a proxy's query
endpoint (argv[1]; the doc's default endpoint is replaced by it), then uses its `ask` to
check what the proxy recorded, and reads a page with its numbers in a frame of their own.
Prints one JSON object with what it found."""

import contextlib
import io
import json
import pathlib
import re
import struct
import sys

endpoint = sys.argv[1]
doc = pathlib.Path(sys.argv[2]).read_text()
code = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
assert "tcp://127.0.0.1:5124" in code, "the example connects to the default endpoint"
namespace = {}
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    exec(code.replace("tcp://127.0.0.1:5124", endpoint), namespace)
ask = namespace["ask"]

out = {"printed_lines": len(printed.getvalue().splitlines())}

header, latest = ask({"v": 1, "op": "latest", "prefixes": ["Temperature."]})
out["latest"] = [[r["topic"], json.loads(r["payload"])["celsius"], r["seq"]] for r in latest]
out["epoch"] = header["epoch"]

seqs, request, pages = [], {"v": 1, "op": "history", "prefixes": ["Temperature.lab."], "order": "newest", "limit": 7}, 0
while request:
    header, page = ask(request)
    pages += 1
    seqs += [r["seq"] for r in page]
    request = header["next"] if header["more"] else None
out["history_newest_first"] = seqs
out["pages"] = pages
out["complete"] = header["complete"]

# the same page with its numbers in a frame of their own ("numbers": "frame")
page = {"v": 1, "op": "history", "prefixes": ["Temperature.lab."], "limit": 7}
header, records = ask(page)
sock = namespace["sock"]
sock.send(json.dumps(dict(page, numbers="frame")).encode())
framed, numbers, *frames = sock.recv_multipart()
framed = json.loads(framed)
packed = [list(n) for n in struct.iter_unpack("<QQ", numbers)]
out["numbers_frame"] = {
    "count": framed["count"],
    "same_numbers": packed == [[r["seq"], r["time_us"]] for r in records],
    "same_frames": frames[0::2] == [r["topic"].encode() for r in records]
    and frames[1::2] == [r["payload"] for r in records],
    "next_asks_the_same": framed["next"].get("numbers") == "frame",
}

header, _ = ask({"v": 1, "op": "info"})
out["info"] = {k: header[k] for k in ("last_seq", "record", "recorded", "unrecorded")}

errors = {}
for name, request in {
    "limit": {"v": 1, "op": "history", "limit": 0},
    "version": {"v": 9, "op": "info"},
    "op": {"v": 1, "op": "drop_everything"},
    "field": {"v": 1, "op": "latest", "prefix": "Temperature."},
}.items():
    try:
        ask(request)
        errors[name] = None
    except RuntimeError as e:
        errors[name] = str(e)
out["errors"] = errors
print(json.dumps(out))
