// Command place_call places a call through uapi-sidecar, holds and releases
// leg "01", and hangs up.
//
// usage: place_call [HOST:PORT]
//
// The address comes from the first argument, else $UAPI_SIDECAR_ADDRESS,
// else 127.0.0.1:50051. Build it with examples/go/build.sh, which generates
// the stubs and compiles offline against Debian's Go packages.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pc "uapi-sidecar/gen/uapi/phonecalls/v1"
)

const (
	deadline  = 5 * time.Second
	extension = "0003*210"
)

// call runs one unary RPC with its own deadline; on error it prints the
// gRPC status, message and uapi-error-code trailer and exits 1.
func call(step string, rpc func(ctx context.Context, opts ...grpc.CallOption) error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	var trailer metadata.MD
	err := rpc(ctx, grpc.Trailer(&trailer))
	if err == nil {
		return
	}
	st := status.Convert(err)
	code := "(none)"
	if v := trailer.Get("uapi-error-code"); len(v) > 0 {
		code = v[0]
	}
	fmt.Fprintf(os.Stderr, "%s failed: status %s, message %q, uapi-error-code %s\n",
		step, strings.ToUpper(codeName(st)), st.Message(), code)
	os.Exit(1)
}

// codeName is the canonical name of a status code, e.g. FAILED_PRECONDITION.
func codeName(st *status.Status) string {
	var b strings.Builder
	for i, r := range st.Code().String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func main() {
	address := "127.0.0.1:50051"
	if len(os.Args) > 1 {
		address = os.Args[1]
	} else if env := os.Getenv("UAPI_SIDECAR_ADDRESS"); env != "" {
		address = env
	}
	conn, err := grpc.Dial(address, grpc.WithInsecure())
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	client := pc.NewPhoneCallServiceClient(conn)

	var created *pc.CreatePhoneCallResponse
	call("CreateSimplePhoneCall", func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		created, err = client.CreateSimplePhoneCall(ctx, &pc.CreatePhoneCallRequest{
			UserId:      "@me",
			Extension:   extension,
			Source:      []string{"0003*210"},
			Destination: []string{"0003*024"},
		}, opts...)
		return err
	})
	if len(created.GetPhoneCalls()) == 0 {
		fmt.Fprintln(os.Stderr, "CreateSimplePhoneCall returned no call")
		os.Exit(1)
	}
	callID := created.GetPhoneCalls()[0].GetId()
	fmt.Println("placed call", callID)

	var held *pc.PhoneCall
	call("OnHold", func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		held, err = client.OnHold(ctx, &pc.OnHoldRequest{
			UserId: "@me", Extension: extension,
			PhoneCallId: callID, PhoneCallViewId: "01",
		}, opts...)
		return err
	})
	since := "(unset)"
	for _, view := range held.GetPhoneCallViews() {
		if view.GetId() == "01" && view.GetOnHold() != nil {
			since = view.GetOnHold().AsTime().Format(time.RFC3339Nano)
		}
	}
	fmt.Println("on hold leg 01 since", since)

	call("OffHold", func(ctx context.Context, opts ...grpc.CallOption) error {
		_, err := client.OffHold(ctx, &pc.OffHoldRequest{
			UserId: "@me", Extension: extension,
			PhoneCallId: callID, PhoneCallViewId: "01",
		}, opts...)
		return err
	})
	fmt.Println("off hold leg 01")

	var hung *pc.HangupPhoneCallsResponse
	call("HangupPhoneCalls", func(ctx context.Context, opts ...grpc.CallOption) (err error) {
		hung, err = client.HangupPhoneCalls(ctx, &pc.HangupPhoneCallsRequest{
			UserId: "@me", Extension: extension, PhoneCallId: callID,
		}, opts...)
		return err
	})
	fmt.Println("hung up", strings.Join(hung.GetPhoneCallIds(), " "))
}
