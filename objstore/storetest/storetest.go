// Package storetest is the conformance suite every objstore driver and
// decorator must pass, so that the block core can rely on one behaviour
// whatever the backend. A driver's test calls Run with a factory of empty
// stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) objstore.Store { return memstore.New() })
//	}
package storetest

import (
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

// ListPageObjects is how many objects the large-listing subtest stores: more
// than S3's 1000-key page, so a driver that forgets to follow continuation
// tokens loses the tail.
const ListPageObjects = 1100

// putWorkers bounds the suite's concurrent puts, enough to fill a listing in
// a second or two on a local MinIO without overwhelming it.
const putWorkers = 16

// Run runs every conformance subtest. Each subtest calls newStore once and
// may fill the store it returns, so newStore must return an empty store (a
// fresh bucket, prefix or directory) and register with t.Cleanup whatever
// must be released; the suite never closes stores itself because a factory
// may hand out views of one shared client.
func Run(t *testing.T, newStore func(t *testing.T) objstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s objstore.Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"EmptyObject", testEmptyObject},
		{"RangeReads", testRangeReads},
		{"Missing", testMissing},
		{"Delete", testDelete},
		{"Overwrite", testOverwrite},
		{"KeyCharacters", testKeyCharacters},
		{"Attrs", testAttrs},
		{"List", testList},
		{"ListManyPages", testListManyPages},
		{"ListStops", testListStops},
		{"IfNoneMatch", testIfNoneMatch},
		{"IfMatch", testIfMatch},
		{"DeleteIfMatch", testDeleteIfMatch},
		{"ConditionalRace", testConditionalRace},
		{"ConcurrentDistinctKeys", testConcurrentDistinctKeys},
		{"ConcurrentSameKey", testConcurrentSameKey},
		{"CancelledContext", testCancelledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
}
