#!/usr/bin/env bash
# Create the isolated virtual environment used by the RecBole side of
# benchmarks/recsys_vs_recbole.py (RecBole 1.2.1 LightGCN vs polymodal).
#
# RecBole 1.2.1 needs numpy<1.24 (it still uses np.float / np.bool8), which
# clashes with the project's own environment, hence a venv of its own. It also
# needs scipy<1.12 (its LightGCN calls dok_matrix._update, gone in scipy 1.12)
# and is kept on pandas<2 (it fills NaNs with chained inplace fillna, which
# pandas 2.x warns about and pandas 3 turns into a silent no-op).
#
# Usage: benchmarks/recbole_side/setup_venv.sh [VENV_DIR]
#   VENV_DIR defaults to <repo>/.bench/recbole-venv (git-ignored).
#
# What gets installed, in this order:
#   1. torch==2.13.0 alone (pip finds the local CPU wheel), so no other torch
#      is ever resolved; every later step runs under a constraints file that
#      pins torch==2.13.0, numpy<1.24, scipy<1.12 and pandas<2.
#   2. recbole==1.2.1 with --no-deps, plus only the dependencies that
#      `recbole.config`, `recbole.data`, `recbole.model`, `recbole.trainer` and
#      `recbole.utils` import: numpy, scipy, pandas, scikit-learn, pyyaml, tqdm,
#      colorlog==4.7.2, colorama==0.4.4, texttable, tensorboard (imported at
#      module level by recbole.utils via torch.utils.tensorboard) and psutil.
#   Not installed: ray (only `recbole.quick_start` and hyper-parameter tuning
#   import it), thop (FLOPs report of quick_start), plotly (hyper-tuning plots).
#   The benchmark script drives RecBole's Config/data/model/Trainer directly,
#   the same sequence as quick_start.run_recbole, so none of them is needed;
#   `import recbole.quick_start` therefore fails in this venv (no ray).
#
# Idempotent: if VENV_DIR already imports the pinned stack, it does nothing.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/../.." && pwd)"
venv_dir="${1:-${repo_root}/.bench/recbole-venv}"
python_bin="${PYTHON:-python3.11}"

check_imports='
import numpy, torch, recbole
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert recbole.__version__ == "1.2.1", recbole.__version__
import pandas, scipy
def v(m): return tuple(int(p) for p in m.__version__.split(".")[:2])
assert v(numpy) < (1, 24), numpy.__version__
assert v(scipy) < (1, 12), scipy.__version__
assert v(pandas) < (2, 0), pandas.__version__
import recbole.config, recbole.data, recbole.model.general_recommender, recbole.trainer, recbole.utils
'

venv_works() {
    [[ -x "${venv_dir}/bin/python" ]] || return 1
    "${venv_dir}/bin/python" -c "${check_imports}" >/dev/null 2>&1
}

if venv_works; then
    echo "recbole venv already set up: ${venv_dir}"
    exit 0
fi

echo "creating recbole venv in ${venv_dir}"
mkdir -p "$(dirname "${venv_dir}")"
[[ -x "${venv_dir}/bin/python" ]] || "${python_bin}" -m venv "${venv_dir}"
pip=("${venv_dir}/bin/python" -m pip install --disable-pip-version-check)

constraints="$(mktemp)"
trap 'rm -f "${constraints}"' EXIT
printf 'torch==2.13.0\nnumpy<1.24\nscipy<1.12\npandas<2.0\n' >"${constraints}"

# 1. torch first, on its own.
"${pip[@]}" "torch==2.13.0"

# 2. RecBole without its declared dependencies, then what it actually imports.
#    pip then reports "recbole 1.2.1 requires ray/thop/plotly/tabulate, which is
#    not installed" as a dependency conflict: expected, and harmless here.
"${pip[@]}" -c "${constraints}" --no-deps "recbole==1.2.1"
"${pip[@]}" -c "${constraints}" \
    "numpy<1.24" "scipy>=1.6.0,<1.12" "pandas>=1.3.0,<2.0" "scikit-learn>=0.23.2" \
    "pyyaml>=5.1.0" "tqdm>=4.48.2" "colorlog==4.7.2" "colorama==0.4.4" \
    "texttable>=0.9.0" "tensorboard>=2.5.0" "psutil>=5.9.0"

if ! venv_works; then
    echo "recbole venv in ${venv_dir} still fails its import check:" >&2
    "${venv_dir}/bin/python" -c "${check_imports}" >&2
    exit 1
fi
echo "recbole venv ready: ${venv_dir}"
