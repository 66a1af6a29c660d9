"""A torch.onnx export at a pinned release, in a process of its own:
`python -m conformance.export_child JSON`, started by exporters._pinned_export with the
releases' cache folders (versions.exporter_sites) first on PYTHONPATH, so the rest of the run
keeps the installed onnxscript and torch. JSON: {"exporter", "sites", "pins" (package →
folder, → version), "spec", "seed", "state", "with_h0", "seq_lens", "path", "opset"}; "state" is a state dict saved
by the parent (loaded with weights_only=True). Prints {"seconds", "onnxscript", "torch"}; a
failure is one line on stderr, exit 2."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _check_release(module, package: str, site: str, version: str) -> None:
    """The pinned package must be the cache's, at the release asked for."""
    from exporter.errors import ExportError

    from .versions import same_release

    where = Path(module.__file__).resolve()
    if not same_release(module.__version__, version) or Path(site).resolve() not in where.parents:
        raise ExportError(f"imported {package} {module.__version__} from {where.parent}, not "
                          f"{version} from {site} (is the cache folder complete?)")


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    for site in reversed(list(job["sites"].values())):   # PYTHONPATH put them first; by hand too
        if site not in sys.path:
            sys.path.insert(0, site)
    from exporter.errors import ExportError
    from exporter.spec import RNNSpec

    try:
        import torch

        from .exporters import torch_export

        onnxscript = None
        if job["exporter"] == "torch-dynamo":
            import onnxscript
        for package, version in job["pins"].items():
            _check_release({"torch": torch, "onnxscript": onnxscript}[package], package,
                           job["sites"][package], version)
        spec = RNNSpec.from_kwargs(json.loads(job["spec"]))
        module = spec.build_module(seed=job["seed"])
        module.load_state_dict(torch.load(job["state"], weights_only=True))
        seconds = torch_export(job["exporter"], module, spec, job["with_h0"], job["seq_lens"],
                               Path(job["path"]), job["opset"])
    except ExportError as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    except Exception as exc:  # torch.onnx importing an onnxscript API this release lacks
        print(f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}",
              file=sys.stderr)
        return 2
    print(json.dumps({"seconds": seconds, "torch": torch.__version__,
                      "onnxscript": onnxscript.__version__ if onnxscript else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
