// Package pb holds the generated protobuf types of the groups wire format.
// The generated code is committed so that building needs no protoc; to
// regenerate after editing a .proto file run `go generate ./groups/pb` with
// protoc and protoc-gen-go on PATH.
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative bond.proto
