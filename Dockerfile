# Builds the `ioc` binary and the operator screens, and ships them with the
# zone data. The screens are built from npm packages pinned in
# dashboards/package-lock.json; nothing is fetched at run time.
FROM node:20-bookworm-slim AS dashboards
WORKDIR /src/dashboards
COPY dashboards/package.json dashboards/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboards/ ./
RUN node build.mjs

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config python3 zlib1g-dev libssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ioc

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 ioc
WORKDIR /app
COPY --from=build /src/target/release/ioc /usr/local/bin/ioc
COPY --from=dashboards /src/dashboards/dist /app/dashboards/dist
COPY data /app/data
USER ioc
ENV IOC_BIND=0.0.0.0:8080 \
    IOC_DASHBOARDS_DIR=/app/dashboards/dist
EXPOSE 8080
ENTRYPOINT ["ioc"]
CMD ["serve"]
