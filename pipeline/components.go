package pipeline

import (
	"github.com/diffuse-go/diffuse/scheduler"
	cliptok "github.com/diffuse-go/diffuse/tokenizer/clip"
)

// SDParts are the parts of an opened SD 1.x/2.x model that fine-tuning
// needs (package train): the components, the CLIP tokenizer and the
// scheduler config (whose betas and prediction type the training noise
// schedule takes).
//
// They are the model's own, not copies, so that training does not hold a
// second set of weights: an adapter attached to the UNet (the LoRA being
// trained) acts on the model's generations too, which is how validation
// images and prior-preservation class images are made with the model
// being trained. They are valid until the model is closed; do not call
// Generate while a training step runs on them.
type SDParts struct {
	*Components
	Tokenizer *cliptok.Tokenizer
	Scheduler scheduler.Config
}

// UNetComponents returns the parts of m when m is an SD 1.x/2.x model
// opened by Open (false for every other family and for a closed model).
func UNetComponents(m Model) (*SDParts, bool) {
	um, ok := m.(*unetModel)
	if !ok {
		return nil, false
	}
	v, ok := um.v.(*sdVariant)
	if !ok {
		return nil, false
	}
	tok, ok := v.tok.(*cliptok.Tokenizer)
	if !ok {
		return nil, false
	}
	um.mu.Lock()
	defer um.mu.Unlock()
	if um.closed {
		return nil, false
	}
	return &SDParts{Components: v.c, Tokenizer: tok, Scheduler: um.sched}, true
}

// SDXLParts are the parts of an opened SDXL base model that fine-tuning
// needs, shared with the model as SDParts are: both text encoders and
// their CLIP tokenizers, the UNet, the VAE and the scheduler config.
type SDXLParts struct {
	*SDXLComponents
	Tokenizer, Tokenizer2 *cliptok.Tokenizer
	Scheduler             scheduler.Config
}

// XLComponents returns the parts of m when m is an SDXL base model opened
// by Open (false for the refiner, which has one text encoder, for every
// other family and for a closed model).
func XLComponents(m Model) (*SDXLParts, bool) {
	um, ok := m.(*unetModel)
	if !ok {
		return nil, false
	}
	v, ok := um.v.(*sdxlVariant)
	if !ok || v.c.Refiner || v.c.TextEncoder == nil {
		return nil, false
	}
	tok, ok1 := v.tok1.(*cliptok.Tokenizer)
	tok2, ok2 := v.tok2.(*cliptok.Tokenizer)
	if !ok1 || !ok2 {
		return nil, false
	}
	um.mu.Lock()
	defer um.mu.Unlock()
	if um.closed {
		return nil, false
	}
	return &SDXLParts{SDXLComponents: v.c, Tokenizer: tok, Tokenizer2: tok2, Scheduler: um.sched}, true
}
