# Settings of recipes/synth/run.sh --tiny, for tests: 0.02 h of audio, a
# 1 x 16 BiLSTM, 2 epochs; every stage in seconds.  --hours and --epochs,
# when given, take the place of the values below.
: "${hours:=0.02}"
: "${epochs:=2}"
hidden=16
layers=1
batch_frames=3000
lr=3e-3
lr_decay=1          # a constant rate
ema=0
patience=0          # no early stopping
lm_order=3
