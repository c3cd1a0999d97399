# Two commands for a fresh machine:
#   make demo   set everything up, index sample videos, print a moment search
#   make test   run the whole test suite (what CI runs)
PY := .venv/bin/python
SAMPLES := ../shared/media/his_girl_friday_6s.mp4 ../shared/media/timer_text_61s.mp4 \
           ../shared/media/car_detection_30s.mp4

.PHONY: setup system-deps demo test bench

system-deps:
	@command -v tesseract >/dev/null && command -v espeak-ng >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr espeak-ng >/dev/null; }

.venv/.installed: pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install -q uv
	@[ -x $(PY) ] || uv venv -q --python python3 .venv
	uv pip install -q --compile-bytecode -p $(PY) -e ".[test]"
	@touch $@

setup: system-deps .venv/.installed

demo: setup
	.venv/bin/chronoscope index $(SAMPLES)
	.venv/bin/chronoscope search "someone stole the royal jewels" -k 3
	.venv/bin/chronoscope search "title of the example film" -k 3
	.venv/bin/chronoscope search "a car driving past" -k 3   # visual space, when a model resolves
	@echo "web page: .venv/bin/chronoscope keys create default, then .venv/bin/chronoscope serve"
	@echo "and open http://127.0.0.1:8000/ with that key (the demo's videos are in tenant default)"

test: setup
	bash tests/web/setup.sh
	$(PY) -m pytest -q

bench: setup
	$(PY) bench/decode.py
