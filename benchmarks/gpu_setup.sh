# Shared preamble of the prepared GPU scripts (sourced, with DEADLINE set): the deadline clock,
# the log, the tomli-w wheel from .whl/, and OUT/env.txt naming the card.
START=$(date +%s)
left() { echo $((DEADLINE - ($(date +%s) - START))); }
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=src:/tmp/site
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    echo "cpus $(nproc)"
} >"$OUT/env.txt" 2>&1
