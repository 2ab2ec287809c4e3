package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	eth2client "github.com/attestantio/go-eth2-client"
	"github.com/attestantio/go-eth2-client/api"
	apiv1 "github.com/attestantio/go-eth2-client/api/v1"
	eth2http "github.com/attestantio/go-eth2-client/http"
	"github.com/attestantio/go-eth2-client/spec"
	"github.com/attestantio/go-eth2-client/spec/phase0"
	"github.com/rs/zerolog"

	"github.com/dvmesh/dvmesh/signing"
)

// ErrBeacon tags answers from a beacon node that contradict the request.
var ErrBeacon = errors.New("beacon node answer invalid")

// Beacon is what a node needs from its beacon node(s). Every method honours ctx.
type Beacon interface {
	// SlotDuration reads the chain's slot duration from the spec (served before genesis).
	SlotDuration(ctx context.Context) (time.Duration, error)
	// Chain returns the chain's static parameters; it fails until the chain has a genesis.
	Chain(ctx context.Context) (*Chain, error)
	// ValidatorIndices maps the given public keys to validator indices; unknown keys are absent.
	ValidatorIndices(ctx context.Context, pubkeys []phase0.BLSPubKey) (map[phase0.BLSPubKey]phase0.ValidatorIndex, error)
	AttesterDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.AttesterDuty, error)
	AttestationData(ctx context.Context, slot phase0.Slot) (*phase0.AttestationData, error)
	// ValidatorLiveness reports which of the validators were seen live in epoch.
	ValidatorLiveness(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) (map[phase0.ValidatorIndex]bool, error)
	// HeadSlot is the slot of the beacon node's head.
	HeadSlot(ctx context.Context) (phase0.Slot, error)
	// JustifiedEpoch is the current justified epoch of the state state (a state id: "head", or a
	// slot, whose state is advanced through any empty slots and epoch transitions up to it).
	JustifiedEpoch(ctx context.Context, state string) (phase0.Epoch, error)
	SubmitAttestations(ctx context.Context, atts []*spec.VersionedAttestation) error
	// SubscribeHeads calls fn with every new head until ctx ends.
	SubscribeHeads(ctx context.Context, fn func(HeadEvent)) error
	DutyBeacon
}

// Chain holds a chain's parameters as its beacon node reports them.
type Chain struct {
	GenesisTime           time.Time
	GenesisValidatorsRoot phase0.Root
	GenesisForkVersion    phase0.Version
	SlotDuration          time.Duration
	SlotsPerEpoch         uint64
	Forks                 []signing.Fork
	ElectraEpoch          phase0.Epoch
	FuluEpoch             phase0.Epoch
	// SyncCommitteeSize is SYNC_COMMITTEE_SIZE (512 on mainnet's preset, the default when the
	// beacon node does not report it).
	SyncCommitteeSize uint64
}

// httpBeacon talks to one beacon node through go-eth2-client's HTTP client.
type httpBeacon struct {
	svc eth2client.Service
}

// DialBeacon connects to the beacon node at url. It fails if the node does not answer.
func DialBeacon(ctx context.Context, url string, timeout time.Duration) (Beacon, error) {
	svc, err := eth2http.New(ctx,
		eth2http.WithAddress(url),
		eth2http.WithTimeout(timeout),
		eth2http.WithLogLevel(zerolog.Disabled),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to beacon node %s: %w", url, err)
	}
	return &httpBeacon{svc: svc}, nil
}

func (b *httpBeacon) SlotDuration(ctx context.Context) (time.Duration, error) {
	s, err := b.svc.(eth2client.SpecProvider).Spec(ctx, &api.SpecOpts{})
	if err != nil {
		return 0, fmt.Errorf("spec: %w", err)
	}
	return slotDuration(s.Data)
}

// slotDuration prefers SLOT_DURATION_MS (newer specs, and sub-second test chains) over
// SECONDS_PER_SLOT.
func slotDuration(spec map[string]any) (time.Duration, error) {
	if ms, ok := spec["SLOT_DURATION_MS"].(uint64); ok && ms > 0 {
		return time.Duration(ms) * time.Millisecond, nil
	}
	if d, ok := spec["SECONDS_PER_SLOT"].(time.Duration); ok && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%w: spec has neither SLOT_DURATION_MS nor SECONDS_PER_SLOT", ErrBeacon)
}

func (b *httpBeacon) Chain(ctx context.Context) (*Chain, error) {
	g, err := b.svc.(eth2client.GenesisProvider).Genesis(ctx, &api.GenesisOpts{})
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	s, err := b.svc.(eth2client.SpecProvider).Spec(ctx, &api.SpecOpts{})
	if err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	fs, err := b.svc.(eth2client.ForkScheduleProvider).ForkSchedule(ctx, &api.ForkScheduleOpts{})
	if err != nil {
		return nil, fmt.Errorf("fork schedule: %w", err)
	}
	c := &Chain{
		GenesisTime:           g.Data.GenesisTime,
		GenesisValidatorsRoot: g.Data.GenesisValidatorsRoot,
		GenesisForkVersion:    g.Data.GenesisForkVersion,
	}
	if c.SlotDuration, err = slotDuration(s.Data); err != nil {
		return nil, err
	}
	var ok bool
	if c.SlotsPerEpoch, ok = s.Data["SLOTS_PER_EPOCH"].(uint64); !ok || c.SlotsPerEpoch == 0 {
		return nil, fmt.Errorf("%w: spec SLOTS_PER_EPOCH missing or invalid", ErrBeacon)
	}
	for name, dst := range map[string]*phase0.Epoch{"ELECTRA_FORK_EPOCH": &c.ElectraEpoch, "FULU_FORK_EPOCH": &c.FuluEpoch} {
		v, ok := s.Data[name].(uint64)
		if !ok {
			return nil, fmt.Errorf("%w: spec %s missing", ErrBeacon, name)
		}
		*dst = phase0.Epoch(v)
	}
	c.SyncCommitteeSize = 512
	if v, ok := s.Data["SYNC_COMMITTEE_SIZE"].(uint64); ok && v > 0 {
		c.SyncCommitteeSize = v
	}
	for _, f := range fs.Data {
		c.Forks = append(c.Forks, signing.Fork{Epoch: f.Epoch, Version: f.CurrentVersion})
	}
	if len(c.Forks) == 0 {
		return nil, fmt.Errorf("%w: empty fork schedule", ErrBeacon)
	}
	return c, nil
}

func (b *httpBeacon) ValidatorIndices(ctx context.Context, pubkeys []phase0.BLSPubKey) (map[phase0.BLSPubKey]phase0.ValidatorIndex, error) {
	resp, err := b.svc.(eth2client.ValidatorsProvider).Validators(ctx, &api.ValidatorsOpts{State: "head", PubKeys: pubkeys})
	if err != nil {
		return nil, fmt.Errorf("validators: %w", err)
	}
	out := make(map[phase0.BLSPubKey]phase0.ValidatorIndex, len(resp.Data))
	for idx, v := range resp.Data {
		if v.Validator != nil {
			out[v.Validator.PublicKey] = idx
		}
	}
	return out, nil
}

func (b *httpBeacon) AttesterDuties(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) ([]*apiv1.AttesterDuty, error) {
	resp, err := b.svc.(eth2client.AttesterDutiesProvider).AttesterDuties(ctx, &api.AttesterDutiesOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		return nil, fmt.Errorf("attester duties for epoch %d: %w", epoch, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) AttestationData(ctx context.Context, slot phase0.Slot) (*phase0.AttestationData, error) {
	// Since Electra every committee of a slot attests to the same data with index 0.
	resp, err := b.svc.(eth2client.AttestationDataProvider).AttestationData(ctx, &api.AttestationDataOpts{Slot: slot, CommitteeIndex: 0})
	if err != nil {
		return nil, fmt.Errorf("attestation data for slot %d: %w", slot, err)
	}
	return resp.Data, nil
}

func (b *httpBeacon) ValidatorLiveness(ctx context.Context, epoch phase0.Epoch, indices []phase0.ValidatorIndex) (map[phase0.ValidatorIndex]bool, error) {
	resp, err := b.svc.(eth2client.ValidatorLivenessProvider).ValidatorLiveness(ctx, &api.ValidatorLivenessOpts{Epoch: epoch, Indices: indices})
	if err != nil {
		return nil, fmt.Errorf("validator liveness in epoch %d: %w", epoch, err)
	}
	out := make(map[phase0.ValidatorIndex]bool, len(resp.Data))
	for _, l := range resp.Data {
		out[l.Index] = l.IsLive
	}
	for _, idx := range indices {
		if _, ok := out[idx]; !ok {
			return nil, fmt.Errorf("%w: no liveness answer for validator %d", ErrBeacon, idx)
		}
	}
	return out, nil
}

func (b *httpBeacon) HeadSlot(ctx context.Context) (phase0.Slot, error) {
	resp, err := b.svc.(eth2client.NodeSyncingProvider).NodeSyncing(ctx, &api.NodeSyncingOpts{})
	if err != nil {
		return 0, fmt.Errorf("sync state: %w", err)
	}
	return resp.Data.HeadSlot, nil
}

func (b *httpBeacon) JustifiedEpoch(ctx context.Context, state string) (phase0.Epoch, error) {
	resp, err := b.svc.(eth2client.FinalityProvider).Finality(ctx, &api.FinalityOpts{State: state})
	if err != nil {
		return 0, fmt.Errorf("finality checkpoints: %w", err)
	}
	if resp.Data == nil || resp.Data.Justified == nil {
		return 0, fmt.Errorf("%w: no justified checkpoint", ErrBeacon)
	}
	return resp.Data.Justified.Epoch, nil
}

func (b *httpBeacon) SubmitAttestations(ctx context.Context, atts []*spec.VersionedAttestation) error {
	// go-eth2-client silently drops an Electra+ attestation it cannot convert to a
	// SingleAttestation; convert each first so that no drop goes unnoticed.
	for i, a := range atts {
		if err := checkSingleConvertible(a); err != nil {
			return fmt.Errorf("attestation %d: %w", i, err)
		}
	}
	if err := b.svc.(eth2client.AttestationsSubmitter).SubmitAttestations(ctx, &api.SubmitAttestationsOpts{Attestations: atts}); err != nil {
		return fmt.Errorf("submit %d attestations: %w", len(atts), err)
	}
	return nil
}

func (b *httpBeacon) SubscribeHeads(ctx context.Context, fn func(HeadEvent)) error {
	err := b.svc.(eth2client.EventsProvider).Events(ctx, &api.EventsOpts{
		Topics: []string{"head"},
		HeadHandler: func(_ context.Context, e *apiv1.HeadEvent) {
			fn(HeadEvent{Slot: e.Slot, Block: e.Block, PreviousDutyDependentRoot: e.PreviousDutyDependentRoot, CurrentDutyDependentRoot: e.CurrentDutyDependentRoot})
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to head events: %w", err)
	}
	return nil
}

func checkSingleConvertible(a *spec.VersionedAttestation) error {
	if a == nil {
		return errors.New("nil attestation")
	}
	var err error
	switch a.Version {
	case spec.DataVersionElectra:
		_, err = a.Electra.ToSingleAttestation(a.ValidatorIndex)
	case spec.DataVersionFulu:
		_, err = a.Fulu.ToSingleAttestation(a.ValidatorIndex)
	default:
		err = fmt.Errorf("unsupported attestation version %s", a.Version)
	}
	if err != nil {
		return fmt.Errorf("not a valid single attestation: %w", err)
	}
	return nil
}
