# Static build, distroless nonroot image with no shell. The build step is `make build`, the
# same command CI runs, so what the image holds is what the tests built.
# `make image` builds the image without Docker; a test in test/tools/image checks that this
# final stage runs the webhook the same way (USER, ENTRYPOINT, CMD, the binary's path).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN make build VERSION=${VERSION}

FROM gcr.io/distroless/static:nonroot
COPY --from=build /src/bin/webhook /webhook
USER 65532:65532
ENTRYPOINT ["/webhook"]
CMD ["serve"]
