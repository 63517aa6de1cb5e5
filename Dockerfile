# Static build, distroless nonroot image with no shell. The build step is `make build`, the
# same command CI runs, so what the image holds is what the tests built.
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
