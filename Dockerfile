# Builds the `ioc` binary and ships it with the dashboards and zone data.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential pkg-config python3 zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ioc

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 ioc
WORKDIR /app
COPY --from=build /src/target/release/ioc /usr/local/bin/ioc
COPY dashboards /app/dashboards
COPY data /app/data
USER ioc
ENV IOC_BIND=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["ioc"]
CMD ["serve"]
