#!/usr/bin/env python3
"""Prints the path of the header that build.rs generated during `cargo build`."""
import json
import subprocess
import sys

out = subprocess.run(
    ["cargo", "build", "--message-format=json"],
    check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
).stdout
# The only path dependency in the workspace is portway itself.
dirs = [m["out_dir"] for m in map(json.loads, out.splitlines())
        if m.get("reason") == "build-script-executed"
        and m.get("package_id", "").startswith("path+file://")]
if not dirs:
    sys.exit("no build-script output for portway found")
print(dirs[-1] + "/portway.h")
