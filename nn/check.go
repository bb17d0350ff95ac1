package nn

import (
	"encoding/json"
	"fmt"
	"sort"
)

// CheckActivation reports, as an error naming field, an activation that
// diffusers' get_activation does not build (it knows silu, swish, mish,
// gelu and relu): models check their act_fn-like config values with it when
// they are built, so that a bad name is refused before any weight is
// loaded instead of panicking in the first forward pass.
func CheckActivation(field, name string) error {
	switch name {
	case "silu", "swish", "mish", "gelu", "relu":
		return nil
	}
	return fmt.Errorf("%s %q not supported (want silu, swish, mish, gelu or relu)", field, name)
}

// CheckFeedForwardActivation reports, as an error, a FeedForward
// activation_fn this package does not implement (geglu, geglu-approximate,
// gelu and gelu-approximate; diffusers' swiglu and linear-silu are
// refused).
func CheckFeedForwardActivation(name string) error {
	switch name {
	case "geglu", "geglu-approximate", "gelu", "gelu-approximate":
		return nil
	}
	return fmt.Errorf("activation_fn %q not supported (want geglu, geglu-approximate, gelu or gelu-approximate)", name)
}

// CheckGroups reports, as an error naming field, a group count that does
// not split channels into whole groups (GroupNorm would refuse it in the
// forward pass).
func CheckGroups(field string, groups, channels int) error {
	if groups <= 0 || channels <= 0 || channels%groups != 0 {
		return fmt.Errorf("%s %d does not divide %d channels", field, groups, channels)
	}
	return nil
}

// RefuseNulls reports, as an error naming them, the keys of config JSON b
// that are null, among keys: the config keys whose upstream default is a
// value, where null would leave this package's default in place while
// diffusers got None.
func RefuseNulls(b []byte, keys ...string) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	var bad []string
	for _, k := range keys {
		if v, ok := raw[k]; ok && string(v) == "null" {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("null %v not supported", bad)
	}
	return nil
}

// Field is a named integer config value, for CheckPositive.
type Field struct {
	Name  string
	Value int
}

// CheckPositive reports the first field that is not positive, as an error
// naming it and its value.
func CheckPositive(fields ...Field) error {
	for _, f := range fields {
		if f.Value <= 0 {
			return fmt.Errorf("%s %d: want a positive value", f.Name, f.Value)
		}
	}
	return nil
}
