package pipeline

import (
	"fmt"

	"github.com/diffuse-go/diffuse/model/vae"
)

// ldmVAEPrefixes are where an SD or SDXL checkpoint keeps its VAE; a
// bare VAE file (vae-ft-mse-840000-ema-pruned.safetensors) has its
// tensors at the top level.
var ldmVAEPrefixes = []string{"first_stage_model."}

// givenVAE loads the VAE Options.Components gives in place of a UNet
// model's own (cur), as A1111's sd_vae does: only the weights change, the
// latent scaling and shift stay cur's (the family's). The VAE's latent
// channels must be the UNet's output channels (latent). It returns cur and
// no files when no VAE is given.
func givenVAE(cur *vae.Model, latent int, opt Options) (*vae.Model, openFiles, error) {
	path := opt.Components.VAE
	if path == "" {
		return cur, nil, nil
	}
	p, err := givenPart("vae", path, ldmVAEPrefixes)
	if err != nil {
		return nil, nil, err
	}
	m, fs, err := loadVAE(p, cur.Cfg, opt)
	if err != nil {
		return nil, nil, err
	}
	if m.Cfg.LatentChannels != latent {
		fs.close()
		return nil, nil, fmt.Errorf("vae: %s has %d latent channels, the model's UNet %d", p, m.Cfg.LatentChannels, latent)
	}
	m.Cfg.ScalingFactor, m.Cfg.ShiftFactor = cur.Cfg.ScalingFactor, cur.Cfg.ShiftFactor
	return m, fs, nil
}
