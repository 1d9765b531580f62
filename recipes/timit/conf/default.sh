# Settings of recipes/timit/run.sh: Adam, lr 1e-3, batches of up to 8000
# frames (~25 utterances), early stopping on dev PER.  The practical choice:
# it converges in tens of epochs where plain SGD at Graves's rate needs a
# hundred or more.  --epochs, when given, takes the place of the value below.
: "${epochs:=40}"
hidden=250
layers=3
optimizer=adam
lr=1e-3
batch_frames=8000
weight_noise=0
patience=5
