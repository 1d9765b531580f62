# Settings of recipes/librispeech/run.sh: a 3 x 250 BiLSTM over characters,
# Adam, lr 1e-3, batches of up to 8000 frames, early stopping on dev CER.
# --epochs, when given, takes the place of the value below.
: "${epochs:=20}"
hidden=250
layers=3
batch_frames=8000
lr=1e-3
patience=3
