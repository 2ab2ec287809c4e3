// Package deps pins the module's direct dependencies while the packages that use them are written.
package deps

import (
	_ "github.com/attestantio/go-eth2-client/http"
	_ "github.com/attestantio/go-eth2-client/spec/phase0"
	_ "github.com/hashicorp/go-metrics"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/herumi/bls-eth-go-binary/bls"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-raft"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/wealdtech/go-eth2-wallet-encryptor-keystorev4"
	_ "go.etcd.io/bbolt"
)
