"""img2vid calls only public PyTorch API: any release may change the private one."""

import re
from pathlib import Path

import img2vid

PRIVATE = re.compile(
    r"torch\._C\b|torch\.ops\.aten|\bnative_\w+\(|torch\._(?!_)\w+|_load_from_state_dict|_forward_(pre_)?hooks"
    r"|_EXTRA_STATE_KEY_SUFFIX|_conv_forward|_register_\w+hook|_functorch"
)


def test_no_private_torch_api_in_the_package():
    package = Path(img2vid.__file__).parent
    found = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line.split("#")[0])
    ]
    assert found == []
