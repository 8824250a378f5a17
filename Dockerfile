# Stealth Recovery: one image for the API, the Celery worker, Beat and Flower.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# /data is the working directory at run time: the embedded default's SQLite file lives there,
# so `docker run IMAGE` alone works, as the image's own user.
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app:app /data

# Dependencies first, pinned by constraints.txt, so a code change does not reinstall them.
COPY pyproject.toml constraints.txt README.md ./
RUN mkdir -p src/stealth_recovery \
    && touch src/stealth_recovery/__init__.py \
    && pip install -c constraints.txt . \
    && pip uninstall -y stealth-recovery \
    && rm -rf src

COPY src ./src
RUN pip install --no-deps -c constraints.txt . && rm -rf src build

WORKDIR /data
VOLUME /data
USER app
EXPOSE 8000 5555
CMD ["stealth-recovery", "serve", "--host", "0.0.0.0", "--port", "8000"]
