"""A torch.onnx export at a pinned onnxscript release, in a process of its own:
`python -m conformance.export_child JSON`. The release's folder (versions.exporter_site) goes
first on sys.path before torch imports onnxscript, so the rest of the run keeps the installed
one. JSON: {"exporter", "site", "spec", "seed", "with_h0", "seq_lens", "path", "opset"}.
Prints {"seconds", "onnxscript"}; a failure is one line on stderr, exit 2."""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    sys.path.insert(0, job["site"])
    from exporter.errors import ExportError
    from exporter.spec import RNNSpec

    try:
        import onnxscript

        from .exporters import torch_export

        if onnxscript.__version__ != job["onnxscript"]:
            raise ExportError(f"imported onnxscript {onnxscript.__version__}, not "
                              f"{job['onnxscript']} (is {job['site']} complete?)")
        spec = RNNSpec.from_kwargs(json.loads(job["spec"]))
        seconds = torch_export(job["exporter"], spec.build_module(seed=job["seed"]), spec,
                               job["with_h0"], job["seq_lens"], job["path"], job["opset"])
    except ExportError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except Exception as exc:  # torch.onnx importing an onnxscript API this release lacks
        print(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}",
              file=sys.stderr)
        return 2
    print(json.dumps({"seconds": seconds, "onnxscript": onnxscript.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
