package job

const device = "2d6a3d0e-8f5c-4d7a-9b1e-0b2f3c4d5e6f"
const tenant = "11111111-1111-4111-8111-111111111111"
