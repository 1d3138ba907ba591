# The bertq image for workers, beat, Flower and the migration step (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
# torch first, from the CUDA index, so that the project's requirement is already met.
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cu124
COPY . .
RUN pip install --no-cache-dir .
ENV TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
CMD ["bertq", "--help"]
