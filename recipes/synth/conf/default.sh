# Settings of recipes/synth/run.sh (the main job): 12 h of audio, a 3 x 250
# BiLSTM, 3 epochs; 28 minutes on 2 cores (RESULTS.md).  More hours and fewer
# epochs beat the reverse at equal cost.  --hours and --epochs, when given,
# take the place of the values below.
: "${hours:=12}"
: "${epochs:=3}"
hidden=250          # units of each direction of each layer
layers=3
batch_frames=4000   # frames per update (about 900 updates an epoch)
lr=2e-3             # Adam
lr_decay=0.5        # the rate x0.5 each epoch
ema=0.999           # dev PER and best.npz with a moving average of the weights
patience=3          # epochs without a better dev PER before stopping
lm_order=6          # the phone n-gram of the training transcripts
