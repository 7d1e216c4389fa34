package wire

import "testing"

// TestOrderVersions is the one table of version ordering: the server
// (internal/ota delegates to this package) and the device SDK both decide
// downgrades with OrderVersions, so a row here holds for both.
func TestOrderVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want Order
	}{
		{"1.0.0", "1.0.0", Same},
		{"1.0.0", "1.0.1", Lower},
		{"1.10.0", "1.9.0", Higher},
		{"2", "10", Lower},
		{"1.2", "1.2.0", Same},
		{"1.2.0.1", "1.2", Higher},
		{"v1.2.3", "1.2.3", Same},
		{"1.2.3+build.9", "1.2.3+build.1", Same},
		{"1.0.0-rc.1", "1.0.0", Lower},
		{"1.0.0-alpha", "1.0.0-alpha.1", Lower},
		{"1.0.0-alpha.1", "1.0.0-alpha.beta", Lower},
		{"1.0.0-beta.2", "1.0.0-beta.11", Lower},
		{"1.0.0-rc.1", "1.0.0-beta.11", Higher},
		{"1.0.0-rc.1", "0.9.9", Higher},
		{"18446744073709551615", "18446744073709551614", Higher},
		// Opaque versions have no order, on either side of the protocol.
		{"release-b", "release-a", Unordered},
		{"release-a", "release-a", Unordered},
		{"1.0a", "1.0", Unordered},
		{"1.a", "1.1", Unordered},
		{"007", "7", Unordered},
		{"2024.01.15", "2023.12.31", Unordered},
		{"1.0.0-01", "1.0.0", Unordered},
		{"18446744073709551616", "1", Unordered},
		{"", "1.0", Unordered},
	}
	for _, tt := range tests {
		if got := OrderVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("OrderVersions(%q, %q) = %s, want %s", tt.a, tt.b, got, tt.want)
		}
		if got, want := OrderVersions(tt.b, tt.a), reverse(tt.want); got != want {
			t.Errorf("OrderVersions(%q, %q) = %s, want %s", tt.b, tt.a, got, want)
		}
		if got, want := IsDowngrade(tt.a, tt.b), tt.want == Higher; got != want {
			t.Errorf("IsDowngrade(current %q, target %q) = %v, want %v", tt.a, tt.b, got, want)
		}
	}
}

func reverse(o Order) Order {
	switch o {
	case Lower:
		return Higher
	case Higher:
		return Lower
	}
	return o
}

func FuzzOrderVersions(f *testing.F) {
	f.Add("1.0.0", "1.0.0-rc.1", "1.0")
	f.Add("release-b", "release-a", "v2")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, ba := OrderVersions(a, b), OrderVersions(b, a)
		if ab != reverse(ba) {
			t.Fatalf("OrderVersions(%q, %q) = %s but reversed = %s", a, b, ab, ba)
		}
		if aa := OrderVersions(a, a); aa != Same && aa != Unordered {
			t.Fatalf("OrderVersions(%q, itself) = %s", a, aa)
		}
		if ab == Unordered && (IsDowngrade(a, b) || IsDowngrade(b, a)) {
			t.Fatalf("unordered %q and %q count as a downgrade", a, b)
		}
		bc, ac := OrderVersions(b, c), OrderVersions(a, c)
		if ab != Unordered && bc != Unordered && ab != Higher && bc != Higher && ac == Higher {
			t.Fatalf("%q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
	})
}
