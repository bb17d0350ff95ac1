package scheduler

import (
	"fmt"
	"sort"
	"strings"
)

// Info describes one sampler name accepted by [New].
type Info struct {
	// Name is the canonical name (as stable-diffusion.cpp / scripts type it).
	Name string
	// Class is the diffusers scheduler class it builds.
	Class string
	// Aliases are the other accepted spellings (A1111 names, diffusers
	// class names, k-diffusion names).
	Aliases []string
	// Description is a one-line summary for --help.
	Description string
	// overrides are the config keys the name implies.
	overrides Config
}

var registry = []Info{
	{Name: "ddim", Class: "DDIMScheduler", Aliases: []string{"DDIM", "DDIMScheduler"},
		Description: "DDIM (deterministic unless eta > 0)"},
	{Name: "ddim_trailing", Class: "DDIMScheduler", Aliases: []string{"DDIM trailing"},
		Description: "DDIM with trailing timestep spacing", overrides: Config{TimestepSpacing: String("trailing")}},
	{Name: "ddpm", Class: "DDPMScheduler", Aliases: []string{"DDPM", "DDPMScheduler"},
		Description: "DDPM ancestral sampling (needs many steps)"},
	{Name: "plms", Class: "PNDMScheduler", Aliases: []string{"PLMS"},
		Description: "PLMS linear multistep (PNDM without Runge-Kutta warm-up)", overrides: Config{SkipPRKSteps: Bool(true)}},
	{Name: "pndm", Class: "PNDMScheduler", Aliases: []string{"PNDM", "PNDMScheduler"},
		Description: "PNDM as configured (SD 1.x default scheduler)"},
	{Name: "euler", Class: "EulerDiscreteScheduler", Aliases: []string{"Euler", "EulerDiscreteScheduler", "k_euler"},
		Description: "Euler (k-diffusion)"},
	{Name: "euler_karras", Class: "EulerDiscreteScheduler", Aliases: []string{"Euler Karras"},
		Description: "Euler with Karras sigmas", overrides: Config{UseKarrasSigmas: Bool(true)}},
	{Name: "euler_a", Class: "EulerAncestralDiscreteScheduler", Aliases: []string{"Euler a", "euler_ancestral", "EulerAncestralDiscreteScheduler", "k_euler_a", "k_euler_ancestral"},
		Description: "Euler ancestral (draws noise every step)"},
	{Name: "heun", Class: "HeunDiscreteScheduler", Aliases: []string{"Heun", "HeunDiscreteScheduler", "k_heun"},
		Description: "Heun (2 model calls per step)"},
	{Name: "heun_karras", Class: "HeunDiscreteScheduler", Aliases: []string{"Heun Karras"},
		Description: "Heun with Karras sigmas", overrides: Config{UseKarrasSigmas: Bool(true)}},
	{Name: "lms", Class: "LMSDiscreteScheduler", Aliases: []string{"LMS", "LMSDiscreteScheduler", "k_lms"},
		Description: "linear multistep (k-diffusion LMS)"},
	{Name: "lms_karras", Class: "LMSDiscreteScheduler", Aliases: []string{"LMS Karras"},
		Description: "LMS with Karras sigmas", overrides: Config{UseKarrasSigmas: Bool(true)}},
	{Name: "dpm++2m", Class: "DPMSolverMultistepScheduler", Aliases: []string{"DPM++ 2M", "dpmpp_2m", "DPMSolverMultistepScheduler", "k_dpmpp_2m", "dpmsolver++"},
		Description: "DPM-Solver++ 2M", overrides: Config{AlgorithmType: String("dpmsolver++"), SolverOrder: Int(2)}},
	{Name: "dpm++2m_karras", Class: "DPMSolverMultistepScheduler", Aliases: []string{"DPM++ 2M Karras", "dpmpp_2m_karras", "k_dpmpp_2m_karras"},
		Description: "DPM-Solver++ 2M with Karras sigmas", overrides: Config{AlgorithmType: String("dpmsolver++"), SolverOrder: Int(2), UseKarrasSigmas: Bool(true)}},
	{Name: "dpm++3m", Class: "DPMSolverMultistepScheduler", Aliases: []string{"DPM++ 3M", "dpmpp_3m"},
		Description: "DPM-Solver++ 3M", overrides: Config{AlgorithmType: String("dpmsolver++"), SolverOrder: Int(3)}},
	{Name: "dpm++2m_sde", Class: "DPMSolverMultistepScheduler", Aliases: []string{"DPM++ 2M SDE", "dpmpp_2m_sde", "k_dpmpp_2m_sde"},
		Description: "DPM-Solver++ 2M SDE (draws noise every step)", overrides: Config{AlgorithmType: String("sde-dpmsolver++"), SolverOrder: Int(2)}},
	{Name: "dpm++2m_sde_karras", Class: "DPMSolverMultistepScheduler", Aliases: []string{"DPM++ 2M SDE Karras", "dpmpp_2m_sde_karras"},
		Description: "DPM-Solver++ 2M SDE with Karras sigmas", overrides: Config{AlgorithmType: String("sde-dpmsolver++"), SolverOrder: Int(2), UseKarrasSigmas: Bool(true)}},
	{Name: "unipc", Class: "UniPCMultistepScheduler", Aliases: []string{"UniPC", "UniPCMultistepScheduler"},
		Description: "UniPC (bh2 predictor-corrector)"},
	{Name: "unipc_karras", Class: "UniPCMultistepScheduler", Aliases: []string{"UniPC Karras"},
		Description: "UniPC with Karras sigmas", overrides: Config{UseKarrasSigmas: Bool(true)}},
	{Name: "lcm", Class: "LCMScheduler", Aliases: []string{"LCM", "LCMScheduler"},
		Description: "latent consistency model sampling (LCM weights or LoRA)"},
}

// normName folds a user-typed name: lower case, "++" as "pp", and only
// letters and digits kept ("DPM++ 2M Karras" = "dpmpp_2m_karras").
func normName(s string) string {
	s = strings.ToLower(strings.ReplaceAll(s, "++", "pp"))
	var b strings.Builder
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var byName = func() map[string]*Info {
	m := map[string]*Info{}
	for i := range registry {
		in := &registry[i]
		for _, n := range append([]string{in.Name}, in.Aliases...) {
			k := normName(n)
			if prev, dup := m[k]; dup && prev != in {
				panic("scheduler: duplicate sampler name " + n)
			}
			m[k] = in
		}
	}
	return m
}()

// Names returns the canonical sampler names, sorted.
func Names() []string {
	out := make([]string, len(registry))
	for i, in := range registry {
		out[i] = in.Name
	}
	sort.Strings(out)
	return out
}

// Samplers returns the description of every sampler name, in a stable order
// (for CLI --help).
func Samplers() []Info {
	out := make([]Info, len(registry))
	copy(out, registry)
	return out
}

// Lookup resolves a sampler name (canonical, alias, A1111 or diffusers
// class name; case, spaces, '-' and '_' do not matter, "++" = "pp").
func Lookup(name string) (Info, bool) {
	in, ok := byName[normName(name)]
	if !ok {
		return Info{}, false
	}
	return *in, true
}

// Help returns a multi-line list of the sampler names for --help.
func Help() string {
	var b strings.Builder
	for _, in := range registry {
		fmt.Fprintf(&b, "  %-20s %s\n", in.Name, in.Description)
	}
	return b.String()
}

// New builds the sampler named name from cfg (typically the model's
// scheduler_config.json, whose _class_name is ignored here). What the name
// implies (Karras sigmas, the SDE algorithm, ...) overrides cfg; everything
// else cfg does not set takes the class's own default.
func New(name string, cfg Config) (Scheduler, error) {
	if isClassName(name) {
		// A diffusers class name takes the config as it is.
		return NewClass(name, cfg)
	}
	in, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("scheduler: unknown sampler %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return NewClass(in.Class, cfg.merge(in.overrides))
}

// NewClass builds a scheduler from its diffusers class name and config.
func NewClass(class string, cfg Config) (Scheduler, error) {
	class = strings.TrimPrefix(class, "diffusers.")
	switch class {
	case "DDPMScheduler":
		return NewDDPM(cfg)
	case "DDIMScheduler":
		return NewDDIM(cfg)
	case "PNDMScheduler":
		return NewPNDM(cfg)
	case "EulerDiscreteScheduler":
		return NewEuler(cfg)
	case "EulerAncestralDiscreteScheduler":
		return NewEulerAncestral(cfg)
	case "HeunDiscreteScheduler":
		return NewHeun(cfg)
	case "LMSDiscreteScheduler":
		return NewLMS(cfg)
	case "DPMSolverMultistepScheduler":
		return NewDPMSolver(cfg)
	case "UniPCMultistepScheduler":
		return NewUniPC(cfg)
	case "LCMScheduler":
		return NewLCM(cfg)
	case "FlowMatchEulerDiscreteScheduler":
		return NewFlowMatchEuler(cfg)
	case "FlowMatchHeunDiscreteScheduler":
		return NewFlowMatchHeun(cfg)
	}
	return nil, fmt.Errorf("scheduler: unsupported scheduler class %q", class)
}

// FromJSON builds the scheduler a diffusers scheduler_config.json describes
// (its _class_name picks the class).
func FromJSON(data []byte) (Scheduler, error) {
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	if cfg.ClassName == "" {
		return nil, fmt.Errorf("scheduler: config has no _class_name")
	}
	return NewClass(cfg.ClassName, cfg)
}

func isClassName(name string) bool {
	switch strings.TrimPrefix(name, "diffusers.") {
	case "DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
		"EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler",
		"DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler",
		"FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler":
		return true
	}
	return false
}
