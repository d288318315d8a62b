# One image for the three services, the web console (and the homecare CLI); the command picks the process.
# The console's GOV.UK Frontend assets come from the npm registry, pinned by package-lock.json.
FROM node:20-slim AS assets
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY schemas ./schemas
COPY services ./services
COPY deploy/reference ./deploy/reference
COPY --from=assets /app/node_modules/govuk-frontend/dist ./node_modules/govuk-frontend/dist
RUN uv sync --frozen --no-dev
USER nobody
CMD ["python", "-m", "services.brokerage"]
