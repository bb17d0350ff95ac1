package pytext

import "testing"

func TestNFC(t *testing.T) {
	cases := [][2]string{
		{"e\u0301", "é"},
		{"A\u030a", "Å"},
		{"\u1100\u1161\u11a8", "각"},
		{"a\u0323\u0302", "ậ"},
		{"a\u0302\u0323", "ậ"},
		{"\u212b", "Å"}, // singleton decomposition
		{"plain", "plain"},
		{"q\u0307\u0323", "q\u0323\u0307"},
	}
	for _, c := range cases {
		if got := NFC(c[0]); got != c[1] {
			t.Errorf("nfc(%+q) = %+q, want %+q", c[0], got, c[1])
		}
	}
}

func TestNFD(t *testing.T) {
	cases := [][2]string{
		{"é", "e\u0301"},
		{"각", "\u1100\u1161\u11a8"},
		{"ậ", "a\u0323\u0302"},
		{"\u212b", "A\u030a"},
		{"plain", "plain"},
	}
	for _, c := range cases {
		if got := NFD(c[0]); got != c[1] {
			t.Errorf("NFD(%+q) = %+q, want %+q", c[0], got, c[1])
		}
	}
}
