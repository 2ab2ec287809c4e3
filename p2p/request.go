package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio"
)

// maxRequestSize bounds one request or response of a request/response protocol.
const maxRequestSize = 4 << 20

// Serve answers requests of protocol proto from cluster peers with handle's response. A nil
// response closes the stream without an answer.
func Serve(h host.Host, proto protocol.ID, timeout time.Duration, handle func(from peer.ID, req []byte) []byte) {
	h.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(timeout))
		req, err := msgio.NewVarintReaderSize(s, maxRequestSize).ReadMsg()
		if err != nil {
			_ = s.Reset()
			return
		}
		if resp := handle(s.Conn().RemotePeer(), req); resp != nil {
			_ = msgio.NewVarintWriter(s).WriteMsg(resp)
		}
	})
}

// Request sends req to p over proto and returns the response.
func Request(ctx context.Context, h host.Host, p peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		return nil, fmt.Errorf("open %s stream to %s: %w", proto, p, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := msgio.NewVarintWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("send request: %w", err)
	}
	resp, err := msgio.NewVarintReaderSize(s, maxRequestSize).ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("read response from %s: %w", p, err)
	}
	return resp, nil
}
