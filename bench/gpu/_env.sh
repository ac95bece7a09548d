# Sourced by the GPU scripts: puts discl (this checkout) on the path and installs, into /tmp/site, the
# carried wheels of whatever the GPU machine's image lacks (it has PyTorch, transformers, timm, pandas, ...,
# and no network). The wheels come from `bash bench/gpu/fetch_wheels.sh`, run where pip can download.
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for mod in diffusers open_clip pydantic ftfy; do
    python3 -c "import $mod" 2>/dev/null || missing+=("$mod")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing carried wheels for: ${missing[*]}"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site bench/gpu/wheels/*.whl \
        || { echo "error: the wheels in bench/gpu/wheels did not install (run bench/gpu/fetch_wheels.sh where pip can download)"; exit 1; }
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
python3 -c "import torch, diffusers, transformers, timm; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'timm', timm.__version__)"
