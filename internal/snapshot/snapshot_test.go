package snapshot

import (
	"slices"
	"testing"
)

func TestCString(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "",
		"bash\x00\x00":     "bash",
		"a\x00b":           "a",
		"cilium\xff\xfeag": "cilium\uFFFDag",
		"\xc3\x00\xff":     "\uFFFD",
	} {
		if got := CString([]byte(in)); got != want {
			t.Errorf("CString(%q) = %q, want %q", in, got, want)
		}
	}
}

// Other is shown when it sums anything, None always.
func TestOwnersShown(t *testing.T) {
	shown := func(o *Owners) (owners []string) {
		for k, w := range o.Shown() {
			owner, _, _ := w.Labels(k)
			owners = append(owners, owner)
		}
		return owners
	}
	var o Owners
	copy(o.Rows[0].Comm[:], "bash")
	copy(o.None.Comm[:], "ignored")
	o.N = 1
	if got := shown(&o); !slices.Equal(got, []string{"bash", ""}) {
		t.Errorf("no other: %q", got)
	}
	for i, set := range []func(*Owners){
		func(o *Owners) { o.OtherOwners = 1 },
		func(o *Owners) { o.Lost = 1 },
		func(o *Owners) { o.Other.MemoryBytes = 1 },
	} {
		c := o // a copy, with one of Other's figures set
		set(&c)
		if got := shown(&c); !slices.Equal(got, []string{"bash", OtherOwner, ""}) {
			t.Errorf("case %d: %q", i, got)
		}
	}
}
