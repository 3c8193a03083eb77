// Package pb holds the generated protobuf types of the streams control
// frames. The generated code is committed; regenerate with
// `go generate ./streams/pb` (needs protoc and protoc-gen-go).
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative streams.proto
