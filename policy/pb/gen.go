// Package pb holds the generated protobuf type of libp2p-signed tickets.
// Regenerate with `go generate ./policy/pb` (needs protoc and protoc-gen-go).
package pb

//go:generate protoc --go_out=. --go_opt=paths=source_relative ticket.proto
