# One image for the API, the CPU workers and the GPU workers (`docker compose up`).
# The PyPI torch wheel for Linux x86_64 carries its own CUDA runtime, so the GPU worker needs
# only the NVIDIA container toolkit on the host, not a CUDA base image.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHRONOSCOPE_HOME=/data HF_HOME=/models HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# Tesseract reads on-screen text; PyAV wheels bundle FFmpeg.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# Dependencies first, in their own layer: source edits then rebuild in seconds.
COPY pyproject.toml README.md ./
RUN mkdir -p core store indexer model search workers api migrations \
 && pip install . prometheus-client==0.26.0 \
 && pip uninstall -y chronoscope
COPY alembic.ini ./
COPY core core
COPY store store
COPY indexer indexer
COPY model model
COPY search search
COPY workers workers
COPY api api
COPY migrations migrations
# Editable, so the package runs from /app: the web page's static files and alembic's
# migrations are read from the tree.
RUN pip install --no-deps -e . \
 && useradd --create-home --uid 10001 chronoscope \
 && mkdir -p /data /models && chown chronoscope /data /models
USER chronoscope
VOLUME ["/data", "/models"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
  CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)" || exit 1
CMD ["chronoscope", "serve", "--host", "0.0.0.0", "--port", "8000"]
