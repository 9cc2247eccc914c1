import hashlib
import json
import sys
from pathlib import Path

from safetensors.torch import load_file

out = Path(sys.argv[1])
dest = Path(sys.argv[2])
res = json.loads((out / "results.json").read_text())


def strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


doc = {
    "command": "forgetbox run --profile quick --out OUT",
    "recorded_at_commit": "f2ae437",
    "hardware": res["provenance"]["hardware"],
    "methods": {m: strip(v["per_seed"]) for m, v in res["methods"].items()},
    "tradeoff": res["tradeoff"],
    "activation_path": res["activation_path"],
    "pca": res["pca"],
    "claims": [c.get("holds") for c in res["claims"]],
}
means = {}
for f in sorted((out / "cache").glob("method-*.safetensors")):
    kind = f.name.rsplit("-", 1)[0]
    t = load_file(str(f))
    means.setdefault(kind, []).append(hashlib.sha256(t["__mean__"].numpy().tobytes()).hexdigest())
doc["method_mean_sha256"] = {k: sorted(v) for k, v in means.items()}
dest.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
print(len(json.dumps(doc)))
