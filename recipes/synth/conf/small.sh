# Settings of recipes/synth/run.sh --small, for a quick look: 0.3 h of audio,
# a 2 x 128 BiLSTM, 15 epochs; 80 s on 2 cores (about 2 minutes when the Numba
# kernels are compiled first, up to 4 on slower machines).  --hours and
# --epochs, when given, take the place of the values below.
: "${hours:=0.3}"
: "${epochs:=15}"
hidden=128
layers=2
batch_frames=2000
lr=3e-3
lr_decay=0.9
ema=0               # no moving average
patience=3
lm_order=4
