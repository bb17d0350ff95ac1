package server

import (
	"fmt"
	"net/http"
	"strings"
)

// vaeAutomatic is A1111's sd_vae value for the checkpoint's own VAE.
const vaeAutomatic = "Automatic"

// ownVAE reports an sd_vae value that keeps the checkpoint's own VAE:
// "Automatic", "None" or none at all.
func ownVAE(name string) bool {
	n := strings.TrimSpace(name)
	return n == "" || strings.EqualFold(n, vaeAutomatic) || strings.EqualFold(n, "None")
}

// vaeName resolves an sd_vae value: "Automatic" for the checkpoint's own
// VAE, else the title of a VAE inside the VAE folder. An unknown name is
// refused with a 400 naming param.
func (s *Server) vaeName(name, param string) (string, error) {
	if ownVAE(name) {
		return vaeAutomatic, nil
	}
	e, err := s.findVAE(name, param)
	if err != nil {
		return "", err
	}
	return e.Title, nil
}

// findVAE looks a VAE up inside the VAE folder (400 when it is not there).
func (s *Server) findVAE(name, param string) (entry, error) {
	if s.cfg.VAEDir == "" {
		return entry{}, badRequest("sd_vae_not_found", param,
			fmt.Sprintf("sd_vae %q: the server has no VAE folder (only %q and \"None\")", name, vaeAutomatic))
	}
	e, err := find(s.vaes(), name, "sd_vae")
	if err != nil {
		ae := *asAPIError(err)
		ae.Status, ae.Param = http.StatusBadRequest, param
		return entry{}, &ae
	}
	return e, nil
}

// vaeOption is the sd_vae option set through POST /sdapi/v1/options.
func (s *Server) vaeOption() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _ := s.options["sd_vae"].(string)
	return v
}

// resolveVAE fills g.VAE with the VAE the job uses: the request's, else
// the sd_vae option, resolved by vaeName.
func (s *Server) resolveVAE(g *genRequest) error {
	name, param := g.VAE, "override_settings.sd_vae"
	if name == "" {
		name, param = s.vaeOption(), "sd_vae"
	}
	v, err := s.vaeName(name, param)
	if err != nil {
		return err
	}
	g.VAE = v
	return nil
}

// jobVAE is a job's VAE name: "" for the checkpoint's own.
func jobVAE(name string) string {
	if ownVAE(name) {
		return ""
	}
	return name
}

// vaePath is the path of the VAE named by a job ("": the model's own).
func (s *Server) vaePath(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	e, err := s.findVAE(name, "sd_vae")
	if err != nil {
		return "", err
	}
	return e.Path, nil
}
