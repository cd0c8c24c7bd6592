package main

// Debian 12's grpc-go (1.33) marshals messages with golang/protobuf 1.3,
// which cannot handle the messages protoc-gen-go 1.28 generates (protobuf
// APIv2). This codec, registered under the default name "proto", marshals
// them with google.golang.org/protobuf instead. With a current grpc-go from
// a Go module it is not needed.

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

type protoV2Codec struct{}

func (protoV2Codec) Marshal(v interface{}) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Marshal(m)
}

func (protoV2Codec) Unmarshal(data []byte, v interface{}) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}

func (protoV2Codec) Name() string { return "proto" }

func init() { encoding.RegisterCodec(protoV2Codec{}) }
