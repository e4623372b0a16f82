# fastmanager server image: built in a Rust image, run from a small one as
# an unprivileged user. Build: docker build -t fastmanager .
# Run: docker run -p 50000:50000 -e FASTMANAGER_AUTHKEY=... fastmanager
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin fastmanager

FROM debian:bookworm-slim
COPY --from=build /src/target/release/fastmanager /usr/local/bin/fastmanager
RUN useradd --system --no-create-home --uid 10001 fastmanager
USER 10001
EXPOSE 50000
# 0.0.0.0 inside the container: docker's port mapping decides who reaches it.
ENTRYPOINT ["/usr/local/bin/fastmanager", "serve", "--address", "0.0.0.0:50000", "--authkey-env", "FASTMANAGER_AUTHKEY"]
