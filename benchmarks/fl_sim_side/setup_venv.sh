#!/usr/bin/env bash
# Create the isolated virtual environment used by the Ray side of benchmarks/fl_engine.py
# (polymodal's in-process federated Simulator vs Flower's Ray simulation, run_simulation).
#
# Ray must never enter the project's own environment or CI (spec federated.md 1.5: "CI must not need Ray"),
# hence a venv of its own under the git-ignored .bench/ folder.
#
# Usage: benchmarks/fl_sim_side/setup_venv.sh [VENV_DIR]
#   VENV_DIR defaults to <repo>/.bench/flwr-sim-venv (git-ignored).
#
# What gets installed, in this order (every step after the first runs under a constraints file pinning
# torch==2.13.0, so no later resolution can replace it with a CUDA build):
#   1. torch==2.13.0 alone (pip finds the local CPU wheel through the configured find-links).
#   2. flwr[simulation]==1.41.0 (pulls ray==2.55.1; 1.42.0 is not installable here anyway, see the spec).
#   3. polymodal itself, editable (`pip install -e .`), for the Flower adapter polymodal.federated.flower and
#      the ready-made apps polymodal.federated.flower_apps that the Ray side runs.
#
# Idempotent: if VENV_DIR already imports the pinned stack, it does nothing.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv_dir="${1:-${repo_root}/.bench/flwr-sim-venv}"
python_bin="${PYTHON:-python3.11}"

check_imports='
import torch, flwr, ray, psutil
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert not torch.version.cuda, "a CUDA torch got in: " + str(torch.version.cuda)
assert flwr.__version__ == "1.41.0", flwr.__version__
import flwr.simulation
import polymodal.federated.flower_apps
'

venv_works() {
    [[ -x "${venv_dir}/bin/python" ]] || return 1
    "${venv_dir}/bin/python" -c "${check_imports}" >/dev/null 2>&1
}

if venv_works; then
    echo "flwr simulation venv already set up: ${venv_dir}"
    exit 0
fi

echo "creating flwr simulation venv in ${venv_dir}"
mkdir -p "$(dirname "${venv_dir}")"
[[ -x "${venv_dir}/bin/python" ]] || "${python_bin}" -m venv "${venv_dir}"
pip=("${venv_dir}/bin/python" -m pip install --disable-pip-version-check)

constraints="$(mktemp)"
trap 'rm -f "${constraints}"' EXIT
printf 'torch==2.13.0\nflwr==1.41.0\n' >"${constraints}"

# 1. torch first, on its own (the CPU wheel from the local find-links).
"${pip[@]}" "torch==2.13.0"

# 2. Flower with its Ray simulation engine.
"${pip[@]}" -c "${constraints}" "flwr[simulation]==1.41.0"

# 3. polymodal, editable, for the adapter and the digits apps.
"${pip[@]}" -c "${constraints}" -e "${repo_root}"

if ! venv_works; then
    echo "flwr simulation venv in ${venv_dir} still fails its import check:" >&2
    "${venv_dir}/bin/python" -c "${check_imports}" >&2
    exit 1
fi
echo "flwr simulation venv ready: ${venv_dir}"
