package testutil

import "testing"

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want [2]int
	}{
		{"6.6", [2]int{6, 6}},
		{"6.1.0-56-cloud-amd64", [2]int{6, 1}},
		{"6.12.117+deb12-cloud-amd64", [2]int{6, 12}},
		{"6.18.44-fc-v595", [2]int{6, 18}},
		{"5.15.0-1051-azure", [2]int{5, 15}},
		{"6.9-rc1", [2]int{6, 9}},
	} {
		got, err := parseVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "6", "x.y", "6.x"} {
		if _, err := parseVersion(bad); err == nil {
			t.Errorf("parseVersion(%q): no error", bad)
		}
	}
}
