"""Queue and task names: what the API and the CLI need to talk to the workers without
loading the Celery app. The `cpu` queue takes plan, decode, speech, OCR, finalize and
webhooks; the `gpu` queue takes Qwen3-VL captions, so each pool is sized on its own."""

CPU, GPU = "cpu", "gpu"
QUEUES = (CPU, GPU)
PLAN = "chronoscope.plan"
CHUNK = "chronoscope.index_chunk"
CAPTION = "chronoscope.caption_chunk"
FINALIZE = "chronoscope.finalize"
NOTIFY = "chronoscope.notify"
QUEUE_OF = {PLAN: CPU, CHUNK: CPU, CAPTION: GPU, FINALIZE: CPU, NOTIFY: CPU}
