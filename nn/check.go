package nn

import "fmt"

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
