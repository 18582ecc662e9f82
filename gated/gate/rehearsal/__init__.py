"""Rehearsal hooks inside the gate, kept apart the way gpiozero keeps its mock pins in pins/mock.py.

    synthetic   rendered camera frames: ticket codes with a camera's distortions, idle scenes
    camera      the frame source that serves them (`camera = "synthetic:"`), with show() and stall()
    control     the control socket through which the simulator (sim/) drives a running gate's
                mock pins and frame source

A gate in service never loads these: the daemon imports `control` only when a rehearsal asks for
it, and the synthetic frame source only for `camera = "synthetic:..."`.
"""
