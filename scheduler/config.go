package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Config is a diffusers scheduler configuration (scheduler_config.json).
// Every field is a pointer so that an absent key can be told from a zero
// value: an absent key takes the default of the scheduler class being built,
// exactly as diffusers' from_config does (the classes disagree, e.g. on
// timestep_spacing and steps_offset). Keys that a class does not know are
// ignored by it. Use [Int], [Float], [Bool] and [String] to fill fields in Go.
//
// Besides the diffusers keys, Config carries the sampler options that
// diffusers passes to step() (eta, s_churn, ...), so that pipelines never
// special-case a sampler.
type Config struct {
	ClassName string `json:"_class_name,omitempty"`

	NumTrainTimesteps   *int      `json:"num_train_timesteps,omitempty"`
	BetaStart           *float64  `json:"beta_start,omitempty"`
	BetaEnd             *float64  `json:"beta_end,omitempty"`
	BetaSchedule        *string   `json:"beta_schedule,omitempty"`
	TrainedBetas        []float64 `json:"trained_betas,omitempty"`
	PredictionType      *string   `json:"prediction_type,omitempty"`
	TimestepSpacing     *string   `json:"timestep_spacing,omitempty"`
	StepsOffset         *int      `json:"steps_offset,omitempty"`
	RescaleBetasZeroSNR *bool     `json:"rescale_betas_zero_snr,omitempty"`

	ClipSample               *bool    `json:"clip_sample,omitempty"`
	ClipSampleRange          *float64 `json:"clip_sample_range,omitempty"`
	SetAlphaToOne            *bool    `json:"set_alpha_to_one,omitempty"`
	Thresholding             *bool    `json:"thresholding,omitempty"`
	DynamicThresholdingRatio *float64 `json:"dynamic_thresholding_ratio,omitempty"`
	SampleMaxValue           *float64 `json:"sample_max_value,omitempty"`
	VarianceType             *string  `json:"variance_type,omitempty"`
	SkipPRKSteps             *bool    `json:"skip_prk_steps,omitempty"`

	InterpolationType *string  `json:"interpolation_type,omitempty"`
	UseKarrasSigmas   *bool    `json:"use_karras_sigmas,omitempty"`
	SigmaMin          *float64 `json:"sigma_min,omitempty"`
	SigmaMax          *float64 `json:"sigma_max,omitempty"`
	TimestepType      *string  `json:"timestep_type,omitempty"`
	FinalSigmasType   *string  `json:"final_sigmas_type,omitempty"`

	SolverOrder      *int       `json:"solver_order,omitempty"`
	AlgorithmType    *string    `json:"algorithm_type,omitempty"`
	SolverType       *string    `json:"solver_type,omitempty"`
	LowerOrderFinal  *bool      `json:"lower_order_final,omitempty"`
	EulerAtFinal     *bool      `json:"euler_at_final,omitempty"`
	UseLuLambdas     *bool      `json:"use_lu_lambdas,omitempty"`
	LambdaMinClipped *FlexFloat `json:"lambda_min_clipped,omitempty"`
	PredictX0        *bool      `json:"predict_x0,omitempty"`
	DisableCorrector []int      `json:"disable_corrector,omitempty"`

	OriginalInferenceSteps *int     `json:"original_inference_steps,omitempty"`
	TimestepScaling        *float64 `json:"timestep_scaling,omitempty"`

	// Flow matching (FlowMatchEulerDiscreteScheduler: SD3, Flux).
	Shift              *float64 `json:"shift,omitempty"`
	UseDynamicShifting *bool    `json:"use_dynamic_shifting,omitempty"`
	BaseShift          *float64 `json:"base_shift,omitempty"`
	MaxShift           *float64 `json:"max_shift,omitempty"`
	BaseImageSeqLen    *int     `json:"base_image_seq_len,omitempty"`
	MaxImageSeqLen     *int     `json:"max_image_seq_len,omitempty"`

	// Step options (diffusers step() keyword arguments).

	// Eta is DDIM's eta (0 = deterministic DDIM, 1 = DDPM-like); it draws
	// noise when > 0.
	Eta *float64 `json:"eta,omitempty"`
	// SChurn, STmin, STmax and SNoise are EulerDiscreteScheduler.step's
	// stochastic sampling options (defaults 0, 0, +inf, 1).
	SChurn *float64   `json:"s_churn,omitempty"`
	STmin  *float64   `json:"s_tmin,omitempty"`
	STmax  *FlexFloat `json:"s_tmax,omitempty"`
	SNoise *float64   `json:"s_noise,omitempty"`
}

// FlexFloat is a float that also decodes from the strings "inf", "-inf" and
// "nan" (diffusers writes lambda_min_clipped = -inf that way, or as the
// non-standard JSON literal -Infinity, which [ParseConfig] accepts too).
type FlexFloat float64

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexFloat) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" {
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		s = str
	}
	switch strings.ToLower(s) {
	case "inf", "+inf", "infinity", "+infinity":
		*f = FlexFloat(math.Inf(1))
		return nil
	case "-inf", "-infinity":
		*f = FlexFloat(math.Inf(-1))
		return nil
	case "nan":
		*f = FlexFloat(math.NaN())
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("scheduler: bad number %q", s)
	}
	*f = FlexFloat(v)
	return nil
}

// MarshalJSON implements json.Marshaler (infinities are written as strings).
func (f FlexFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsInf(v, 1):
		return []byte(`"inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-inf"`), nil
	case math.IsNaN(v):
		return []byte(`"nan"`), nil
	}
	return json.Marshal(v)
}

// Int returns a pointer to v, for filling a [Config].
func Int(v int) *int { return &v }

// Float returns a pointer to v, for filling a [Config].
func Float(v float64) *float64 { return &v }

// Bool returns a pointer to v, for filling a [Config].
func Bool(v bool) *bool { return &v }

// String returns a pointer to v, for filling a [Config].
func String(v string) *string { return &v }

// ParseConfig decodes a diffusers scheduler_config.json. Unknown keys are
// ignored; null means absent. The non-standard literals Infinity, -Infinity
// and NaN that Python's json module writes are accepted.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite(data)))
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("scheduler: parsing config: %w", err)
	}
	return c, nil
}

// quoteNonFinite turns the bare tokens Infinity, -Infinity and NaN (outside
// strings) into JSON strings.
func quoteNonFinite(data []byte) []byte {
	if !bytes.Contains(data, []byte("Infinity")) && !bytes.Contains(data, []byte("NaN")) {
		return data
	}
	var out bytes.Buffer
	inStr, esc := false, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		if inStr {
			out.WriteByte(c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		if c == '"' {
			inStr = true
			out.WriteByte(c)
			continue
		}
		matched := false
		for _, tok := range []string{"-Infinity", "Infinity", "NaN"} {
			if bytes.HasPrefix(data[i:], []byte(tok)) {
				out.WriteString(`"` + tok + `"`)
				i += len(tok) - 1
				matched = true
				break
			}
		}
		if !matched {
			out.WriteByte(c)
		}
	}
	return out.Bytes()
}

// params is a Config with every value resolved (class default or given).
type params struct {
	numTrain        int
	betaStart       float64
	betaEnd         float64
	betaSchedule    string
	trainedBetas    []float64
	predictionType  string
	timestepSpacing string
	stepsOffset     int
	rescaleZeroSNR  bool

	clipSample      bool
	clipSampleRange float64
	setAlphaToOne   bool
	thresholding    bool
	dynRatio        float64
	sampleMaxValue  float64
	varianceType    string
	skipPRK         bool

	interpolationType string
	karras            bool
	sigmaMin          *float64
	sigmaMax          *float64
	timestepType      string
	finalSigmasType   string

	solverOrder      int
	algorithmType    string
	solverType       string
	lowerOrderFinal  bool
	eulerAtFinal     bool
	luLambdas        bool
	lambdaMinClipped float64
	predictX0        bool
	disableCorrector []int

	originalInferenceSteps int
	timestepScaling        float64

	eta    float64
	sChurn float64
	sTmin  float64
	sTmax  float64
	sNoise float64
}

// baseParams holds the defaults shared by most classes (DDPM's signature).
func baseParams() params {
	return params{
		numTrain:        1000,
		betaStart:       0.0001,
		betaEnd:         0.02,
		betaSchedule:    "linear",
		predictionType:  "epsilon",
		timestepSpacing: "leading",
		clipSampleRange: 1.0,
		dynRatio:        0.995,
		sampleMaxValue:  1.0,
		varianceType:    "fixed_small",

		interpolationType: "linear",
		timestepType:      "discrete",
		finalSigmasType:   "zero",

		solverOrder:      2,
		algorithmType:    "dpmsolver++",
		solverType:       "midpoint",
		lowerOrderFinal:  true,
		lambdaMinClipped: math.Inf(-1),
		predictX0:        true,

		originalInferenceSteps: 50,
		timestepScaling:        10.0,

		sTmax:  math.Inf(1),
		sNoise: 1.0,
	}
}

// apply overrides p with every key present in c.
func (c Config) apply(p *params) {
	setI := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setF := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	setB := func(dst *bool, v *bool) {
		if v != nil {
			*dst = *v
		}
	}
	setS := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	setI(&p.numTrain, c.NumTrainTimesteps)
	setF(&p.betaStart, c.BetaStart)
	setF(&p.betaEnd, c.BetaEnd)
	setS(&p.betaSchedule, c.BetaSchedule)
	if c.TrainedBetas != nil {
		p.trainedBetas = c.TrainedBetas
	}
	setS(&p.predictionType, c.PredictionType)
	setS(&p.timestepSpacing, c.TimestepSpacing)
	setI(&p.stepsOffset, c.StepsOffset)
	setB(&p.rescaleZeroSNR, c.RescaleBetasZeroSNR)
	setB(&p.clipSample, c.ClipSample)
	setF(&p.clipSampleRange, c.ClipSampleRange)
	setB(&p.setAlphaToOne, c.SetAlphaToOne)
	setB(&p.thresholding, c.Thresholding)
	setF(&p.dynRatio, c.DynamicThresholdingRatio)
	setF(&p.sampleMaxValue, c.SampleMaxValue)
	setS(&p.varianceType, c.VarianceType)
	setB(&p.skipPRK, c.SkipPRKSteps)
	setS(&p.interpolationType, c.InterpolationType)
	setB(&p.karras, c.UseKarrasSigmas)
	if c.SigmaMin != nil {
		p.sigmaMin = Float(*c.SigmaMin)
	}
	if c.SigmaMax != nil {
		p.sigmaMax = Float(*c.SigmaMax)
	}
	setS(&p.timestepType, c.TimestepType)
	setS(&p.finalSigmasType, c.FinalSigmasType)
	setI(&p.solverOrder, c.SolverOrder)
	setS(&p.algorithmType, c.AlgorithmType)
	setS(&p.solverType, c.SolverType)
	setB(&p.lowerOrderFinal, c.LowerOrderFinal)
	setB(&p.eulerAtFinal, c.EulerAtFinal)
	setB(&p.luLambdas, c.UseLuLambdas)
	if c.LambdaMinClipped != nil {
		p.lambdaMinClipped = float64(*c.LambdaMinClipped)
	}
	setB(&p.predictX0, c.PredictX0)
	if c.DisableCorrector != nil {
		p.disableCorrector = c.DisableCorrector
	}
	setI(&p.originalInferenceSteps, c.OriginalInferenceSteps)
	setF(&p.timestepScaling, c.TimestepScaling)
	setF(&p.eta, c.Eta)
	setF(&p.sChurn, c.SChurn)
	setF(&p.sTmin, c.STmin)
	if c.STmax != nil {
		p.sTmax = float64(*c.STmax)
	}
	setF(&p.sNoise, c.SNoise)
}

// merge returns c with every key that o sets overriding c's.
func (c Config) merge(o Config) Config {
	var cm, om map[string]json.RawMessage
	b1, _ := json.Marshal(c)
	b2, _ := json.Marshal(o)
	_ = json.Unmarshal(b1, &cm)
	_ = json.Unmarshal(b2, &om)
	for k, v := range om {
		cm[k] = v
	}
	b, _ := json.Marshal(cm)
	var out Config
	_ = json.Unmarshal(b, &out)
	return out
}
