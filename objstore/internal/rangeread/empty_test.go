package rangeread

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"

	"github.com/objbacker/objbacker/objstore"
)

func TestEmptyHasTheObjectsAttrs(t *testing.T) {
	want := objstore.Attrs{Size: 10, ETag: "e", Metadata: map[string]string{"k": "v"}}
	var statted string
	stat := func(_ context.Context, key string) (objstore.Attrs, error) {
		statted = key
		return want, nil
	}
	rc, attrs, err := Empty(t.Context(), stat, "key")
	if err != nil {
		t.Fatalf("Empty: %v", err)
	}
	defer rc.Close()
	if statted != "key" || !reflect.DeepEqual(attrs, want) {
		t.Errorf("Empty stat %q gave %+v; want key's %+v", statted, attrs, want)
	}
	if data, err := io.ReadAll(rc); err != nil || len(data) != 0 {
		t.Errorf("reading the body = %q, %v; want nothing", data, err)
	}
}

func TestEmptyPassesStatErrors(t *testing.T) {
	stat := func(context.Context, string) (objstore.Attrs, error) {
		return objstore.Attrs{Size: 1}, objstore.ErrNotFound
	}
	rc, attrs, err := Empty(t.Context(), stat, "key")
	if rc != nil || !reflect.DeepEqual(attrs, objstore.Attrs{}) || !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("Empty = %v, %+v, %v; want no body, no attributes, ErrNotFound", rc, attrs, err)
	}
}
