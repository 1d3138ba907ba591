# The bertq image for workers, beat, Flower, the migration step and the CLI (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
# torch first, from the CUDA index, so that the project's requirement is already met.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cu124
COPY . .
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 bertq \
    && mkdir -p /data/home /data/artifacts /data/hf-cache /data/input /data/output \
    && chown -R bertq:bertq /data
ENV TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
USER bertq
CMD ["bertq", "--help"]
