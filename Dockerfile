# syntax=docker/dockerfile:1
# certportal's image where a container engine and a registry are available.
# `make image` builds the same image without either (deploy/image).
#
#   docker build -t certportal:dev --build-arg VERSION=dev .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# modernc.org/sqlite and pgx are pure Go, so CGO off gives a static binary
# that runs on an image without libc. Templates and assets are embedded.
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/certportal ./cmd/certportal
# The state directory, owned by distroless's nonroot user (65532).
RUN mkdir -p /out/state && chown 65532:65532 /out/state && chmod 0700 /out/state

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="certportal" \
      org.opencontainers.image.description="Turns a Vault userpass login into a browser-ready PKCS#12 client certificate" \
      org.opencontainers.image.source="https://github.com/certportal/certportal" \
      org.opencontainers.image.documentation="https://github.com/certportal/certportal/blob/main/docs/deploy.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/certportal /usr/local/bin/certportal
COPY --from=build --chown=65532:65532 /out/state /var/lib/certportal
USER 65532:65532
WORKDIR /var/lib/certportal
ENV CERTPORTAL_LISTEN=0.0.0.0:8080 \
    CERTPORTAL_DB=/var/lib/certportal/certportal.db
EXPOSE 8080
VOLUME ["/var/lib/certportal"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/certportal", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/certportal"]
CMD ["serve"]
