# Settings of recipes/librispeech/run.sh --tiny: a 1 x 16 model, one epoch,
# on 20 utterances per part (--subset 20, unless --subset says otherwise), a
# small beam and LM grid: every stage in a minute or two, to check them.
: "${epochs:=1}"
hidden=16
layers=1
batch_frames=3000
lr=3e-3
patience=0
beam=4
lm_alphas="0 0.3"
lm_betas="0"
: "${subset:=20}"
